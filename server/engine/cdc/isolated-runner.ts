// Runs CDC runners in worker threads (one per direction per worker process, started on first use),
// so nothing else in the process — Prisma queries, a parity pass, backfill slices, pg-boss, the
// supervisor's ticks, cutovers — shares the event loop that receives the streams and applies them
// (three stalls of the forward lag were traced to that sharing). Both directions run off the main
// loop, each in a thread of its own: every plan's forward stream in one, every (plan, shard)'s
// reverse stream in the other, so a busy direction does not delay the other's drain during a
// cutover. A thread has its own connections (pools, Prisma client); the process only asks it to
// start and stop runners, relays its log lines and learns how each runner ended. A thread that dies
// ends every runner in it with that failure; the next start begins a new thread.
import type { Worker } from "node:worker_threads";
import { newPressureBuffer, watchPressure } from "../shared/replication-pressure";
import { startTsThread } from "../shared/ts-thread";
import type { CdcRunner } from "./cdc-runner";
import type { SettlementsMessage, StampedFailure } from "./origin-settlement";
import { scavengeOnCallingThread } from "./scavenge-alone";

const STOP_TIMEOUT_MS = 20_000;

/** What the thread runs: a plan's forward stream, or one shard's reverse stream (reverse-stream.ts). */
export type CdcJob =
  | { direction: "forward"; planId: string }
  | { direction: "reverse"; planId: string; ordinal: number; controlPlaneUrl: string };

/** A job's name between the process and the thread (one runner per name at a time). */
export function cdcJobKey(job: CdcJob): string {
  return job.direction === "forward" ? job.planId : `reverse:${job.planId}:${job.ordinal}`;
}

export type ToThread = { kind: "start"; key: string; job: CdcJob } | { kind: "stop"; key: string };

type FromThread =
  | { kind: "ready" }
  | SettlementsMessage
  | { kind: "log"; message: string }
  | {
      kind: "finished";
      key: string;
      progressed: boolean;
      failure: { message: string; code?: string } | null;
    };

interface Proxy {
  finished: boolean;
  progressed: boolean;
  failure: Error | null;
  end: () => void;
}

/** One thread per direction: a busy reverse stream never delays a forward drain, nor the other way. */
type Lane = CdcJob["direction"];

interface Thread {
  worker: Worker;
  proxies: Map<string, Proxy>;
  /** Settles once the thread has loaded its code, or died first (then with the reason). */
  ready: Promise<void>;
}

const threads = new Map<Lane, Thread>();
/**
 * Per lane, the stamped-failure settlements its thread last reported pending: handed to the lane's
 * next thread, so a thread that was terminated or died does not take them with it (a new thread's
 * open would read the origin at an aborted batch's stamp and skip it: break-settle-thread.test.ts).
 */
const settlements = new Map<Lane, StampedFailure[]>();
let logTo: (m: string) => void = () => {};

function ensureThread(lane: Lane): Thread {
  const running = threads.get(lane);
  if (running) return running;
  // The thread's streams say how late they run; this process's parity passes and backfill copies
  // hold their next chunk while it is late (replication-pressure.ts).
  const pressure = newPressureBuffer();
  const unwatch = watchPressure(pressure);
  scavengeOnCallingThread();
  const worker = startTsThread(new URL("./cdc-thread.ts", import.meta.url), {
    name: `shardshift-cdc-${lane}`,
    workerData: { lane, pressure, settlements: settlements.get(lane) ?? [] },
  });
  let loaded = () => {};
  let failedToLoad: (error: Error) => void = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    loaded = resolve;
    failedToLoad = reject;
  });
  ready.catch(() => {}); // a thread that dies is reported through its runners too
  const thread: Thread = { worker, proxies: new Map(), ready };
  // The process may exit while the thread still streams (its stop() ends the runners first).
  worker.unref();
  worker.on("message", (message: FromThread) => {
    if (message.kind === "ready") {
      loaded();
      return;
    }
    if (message.kind === "log") {
      logTo(message.message);
      return;
    }
    if (message.kind === "settlements") {
      if (threads.get(lane) === thread) settlements.set(lane, message.failures);
      return;
    }
    const proxy = thread.proxies.get(message.key);
    if (!proxy) return;
    proxy.progressed = message.progressed;
    if (message.failure) {
      proxy.failure = Object.assign(new Error(message.failure.message), { code: message.failure.code });
    }
    proxy.end();
  });
  const died = (error: Error) => {
    failedToLoad(error);
    unwatch();
    if (threads.get(lane) === thread) threads.delete(lane);
    for (const proxy of [...thread.proxies.values()]) {
      proxy.failure ??= error;
      proxy.end();
    }
  };
  worker.on("error", (error) => {
    logTo(`[cdc] the ${lane} CDC thread failed: ${error.message}`);
    died(error);
  });
  worker.on("exit", (code) => died(new Error(`the ${lane} CDC thread exited (${code})`)));
  threads.set(lane, thread);
  return thread;
}

/**
 * Starts both directions' threads now and resolves once each has loaded its code. A thread's start
 * is seconds of compiling on a core (its own module graph, its own Prisma client), and the forward
 * thread then runs at a raised priority: started on first use, that landed in the middle of the
 * first backfill (whose copy it slowed by a tenth) or the first cutover. A worker process that
 * serves movements pays it once, at boot (worker.ts).
 */
export async function warmCdcThreads(options: { log?: (m: string) => void } = {}): Promise<void> {
  // What the threads say while they load (their priority, or why they could not raise it) goes to
  // the worker's log: before, only a runner's start set it, and a warmed thread's lines were lost.
  if (options.log) logTo = options.log;
  await Promise.all((["forward", "reverse"] as const).map((lane) => ensureThread(lane).ready));
}

/** A plan's forward CDC, in the forward thread. */
export function startIsolatedCdcRunner(planId: string, options: { log: (m: string) => void }): CdcRunner {
  return startIsolatedRunner({ direction: "forward", planId }, options);
}

export function startIsolatedRunner(job: CdcJob, options: { log: (m: string) => void }): CdcRunner {
  logTo = options.log;
  const key = cdcJobKey(job);
  const { worker, proxies } = ensureThread(job.direction);
  const post = (message: ToThread) => worker.postMessage(message);
  let resolveEnded = () => {};
  const ended = new Promise<void>((resolve) => {
    resolveEnded = resolve;
  });
  const proxy: Proxy = {
    finished: false,
    progressed: false,
    failure: null,
    end: () => {
      if (proxies.get(key) === proxy) proxies.delete(key);
      proxy.finished = true;
      resolveEnded();
    },
  };
  proxies.set(key, proxy);
  post({ kind: "start", key, job });
  return {
    get finished() {
      return proxy.finished;
    },
    get failure() {
      return proxy.failure;
    },
    get progressed() {
      return proxy.progressed;
    },
    ended,
    async stop() {
      if (proxy.finished) return;
      post({ kind: "stop", key });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([ended, new Promise<void>((r) => (timer = setTimeout(r, STOP_TIMEOUT_MS)))]);
      clearTimeout(timer);
      // A runner stuck on a server that does not answer: end the thread (and every runner in it;
      // their sessions end with their sockets, and the supervisor starts them again).
      if (!proxy.finished) await worker.terminate();
    },
  };
}

/** Ends the threads (after every runner in them was stopped): the worker process is stopping. */
export async function stopCdcThread(): Promise<void> {
  const all = [...threads.values()];
  threads.clear();
  await Promise.all(all.map((t) => t.worker.terminate()));
}
