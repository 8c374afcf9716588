// The body of a CDC worker thread (isolated-runner.ts starts one per direction per worker process):
// the streams, appliers and confirmers of that direction this process runs — plans' forward CDC or
// shards' reverse streams — on an event loop of their own.
// From the parent: ToThread ({ kind: "start", key, job } | { kind: "stop", key }). To the parent:
// { kind: "ready" } once its code is loaded, { kind: "log", message } and, once per started runner, { kind: "finished", key, failure, progressed }.
import { type MessagePort, parentPort, workerData } from "node:worker_threads";
import { startReverseStream } from "../cutover/reverse-stream";
import { installPressureBuffer } from "../shared/replication-pressure";
import type { CdcRunner } from "./cdc-runner";
import { startForwardCdc } from "./forward-cdc";
import type { CdcJob, ToThread } from "./isolated-runner";
import { handOverSettlements, type StampedFailure } from "./origin-settlement";
import { startLoopDelayTrace, stopLoopDelayTrace } from "./stage-trace";
import { cdcThreadNice, describePriority, setThisThreadNice } from "./thread-priority";

if (!parentPort) throw new Error("cdc-thread.ts runs only as a worker thread (see isolated-runner.ts)");
const port: MessagePort = parentPort;

const runners = new Map<string, CdcRunner>();
const data = workerData as {
  lane?: string;
  pressure?: SharedArrayBuffer;
  settlements?: StampedFailure[];
} | null;
// How late each stream runs, read by the process's background work (replication-pressure.ts).
if (data?.pressure) installPressureBuffer(data.pressure);
const log = (message: string) => port.postMessage({ kind: "log", message });
// Settlements an ended thread of this lane left pending are this thread's to finish, and the
// process keeps this thread's for the next one (origin-settlement.ts).
handOverSettlements(data?.settlements ?? [], (message) => port.postMessage(message));
// Replication first (thread-priority.ts). 0 asks for nothing.
try {
  const nice = cdcThreadNice();
  if (nice !== 0) log(describePriority(setThisThreadNice(nice)));
} catch (error) {
  log(`CDC thread stays at the worker's priority: ${(error as Error).message}`);
}

function run(job: CdcJob): CdcRunner {
  if (job.direction === "forward") return startForwardCdc(job.planId, { log });
  return startReverseStream(job.planId, job.ordinal, { controlPlaneUrl: job.controlPlaneUrl, log });
}

function start(key: string, job: CdcJob) {
  if (runners.has(key)) return;
  // The bench's diagnostic (off unless SHARDSHIFT_CDC_TRACE is set): this thread's own loop delay,
  // while it runs a stream: a thread warmed at boot, or whose streams all ended, wakes for nothing.
  startLoopDelayTrace(data?.lane ?? "cdc");
  const runner = run(job);
  runners.set(key, runner);
  void runner.ended.then(() => {
    runners.delete(key);
    if (runners.size === 0) stopLoopDelayTrace();
    const failure = runner.failure as { message?: unknown; code?: unknown } | null;
    port.postMessage({
      kind: "finished",
      key,
      progressed: runner.progressed,
      failure: failure
        ? {
            message: typeof failure.message === "string" ? failure.message : String(failure),
            code: typeof failure.code === "string" ? failure.code : undefined,
          }
        : null,
    });
  });
}

port.on("message", (message: ToThread) => {
  if (message.kind === "start") start(message.key, message.job);
  else void runners.get(message.key)?.stop();
});
// Every module is loaded by now (static imports come first): the process may stop waiting (warmCdcThreads).
port.postMessage({ kind: "ready" });
