// The body of the CDC worker thread (isolated-runner.ts starts it, once per worker process): every
// plan's stream, appliers and confirmer this process runs, on an event loop of their own.
// From the parent: { kind: "start" | "stop", planId }. To the parent: { kind: "log", message } and,
// once per started runner, { kind: "finished", planId, failure, progressed }.
import { type MessagePort, parentPort } from "node:worker_threads";
import type { CdcRunner } from "./cdc-runner";
import { startForwardCdc } from "./forward-cdc";

if (!parentPort) throw new Error("cdc-thread.ts runs only as a worker thread (see isolated-runner.ts)");
const port: MessagePort = parentPort;

const runners = new Map<string, CdcRunner>();
const log = (message: string) => port.postMessage({ kind: "log", message });

function start(planId: string) {
  if (runners.has(planId)) return;
  const runner = startForwardCdc(planId, { log });
  runners.set(planId, runner);
  void runner.ended.then(() => {
    runners.delete(planId);
    const failure = runner.failure as { message?: unknown; code?: unknown } | null;
    port.postMessage({
      kind: "finished",
      planId,
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

port.on("message", (message: { kind: "start" | "stop"; planId: string }) => {
  if (message.kind === "start") start(message.planId);
  else void runners.get(message.planId)?.stop();
});
