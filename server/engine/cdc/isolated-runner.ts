// Runs CDC runners in a worker thread of their own (one per worker process, started on first use),
// so nothing else in the process — Prisma queries, a parity pass, backfill slices, pg-boss — shares
// the event loop that receives the streams and applies them (three stalls of the lag were traced to
// that sharing). The thread has its own connections (pools, Prisma client); the process only asks
// it to start and stop plans' runners, relays its log lines and learns how each runner ended. A
// thread that dies ends every runner in it with that failure; the next start begins a new thread.
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import type { CdcRunner } from "./cdc-runner";

const STOP_TIMEOUT_MS = 20_000;

/**
 * The thread's entry is TypeScript: it registers tsx (as the process does with --import tsx) and
 * then imports the thread module. A plain `new Worker(file.ts)` fails on Node 20: a worker resolves
 * its entry before an --import hook is in place.
 */
function threadBootstrap(): string {
  // The package's ESM entry (its CommonJS one imports a path that does not exist from a worker).
  const tsxRoot = path.dirname(createRequire(import.meta.url).resolve("tsx/package.json"));
  const tsx = pathToFileURL(path.join(tsxRoot, "dist/esm/api/index.mjs")).href;
  const entry = new URL("./cdc-thread.ts", import.meta.url).href;
  return `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); })`;
}

type FromThread =
  | { kind: "log"; message: string }
  | {
      kind: "finished";
      planId: string;
      progressed: boolean;
      failure: { message: string; code?: string } | null;
    };

interface Proxy {
  finished: boolean;
  progressed: boolean;
  failure: Error | null;
  end: () => void;
}

let thread: Worker | null = null;
const proxies = new Map<string, Proxy>();
let logTo: (m: string) => void = () => {};

function ensureThread(): Worker {
  if (thread) return thread;
  const worker = new Worker(threadBootstrap(), { eval: true });
  // The process may exit while the thread still streams (its stop() ends the runners first).
  worker.unref();
  worker.on("message", (message: FromThread) => {
    if (message.kind === "log") {
      logTo(message.message);
      return;
    }
    const proxy = proxies.get(message.planId);
    if (!proxy) return;
    proxy.progressed = message.progressed;
    if (message.failure) {
      proxy.failure = Object.assign(new Error(message.failure.message), { code: message.failure.code });
    }
    proxy.end();
  });
  const died = (error: Error) => {
    if (thread === worker) thread = null;
    for (const proxy of [...proxies.values()]) {
      proxy.failure ??= error;
      proxy.end();
    }
  };
  worker.on("error", (error) => {
    logTo(`[cdc] the CDC thread failed: ${error.message}`);
    died(error);
  });
  worker.on("exit", (code) => died(new Error(`the CDC thread exited (${code})`)));
  thread = worker;
  return worker;
}

export function startIsolatedCdcRunner(planId: string, options: { log: (m: string) => void }): CdcRunner {
  logTo = options.log;
  const worker = ensureThread();
  let resolveEnded = () => {};
  const ended = new Promise<void>((resolve) => {
    resolveEnded = resolve;
  });
  const proxy: Proxy = {
    finished: false,
    progressed: false,
    failure: null,
    end: () => {
      if (proxies.get(planId) === proxy) proxies.delete(planId);
      proxy.finished = true;
      resolveEnded();
    },
  };
  proxies.set(planId, proxy);
  worker.postMessage({ kind: "start", planId });
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
      worker.postMessage({ kind: "stop", planId });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([ended, new Promise<void>((r) => (timer = setTimeout(r, STOP_TIMEOUT_MS)))]);
      clearTimeout(timer);
      // A runner stuck on a server that does not answer: end the thread (and every runner in it;
      // their sessions end with their sockets, and the supervisor starts them again).
      if (!proxy.finished) await worker.terminate();
    },
  };
}

/** Ends the thread (after every runner in it was stopped): the worker process is stopping. */
export async function stopCdcThread(): Promise<void> {
  const worker = thread;
  thread = null;
  await worker?.terminate();
}
