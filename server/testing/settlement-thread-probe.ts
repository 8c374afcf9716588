// A worker thread for break-settle-thread.test.ts: runs one TargetApplier the way a CDC thread does
// (cdc-thread.ts: it hands its pending settlements over as that thread does) and answers the test's
// commands, so the test can end the thread as isolated-runner's stop() does (worker.terminate())
// while a settlement is pending in it.
import { parentPort, workerData } from "node:worker_threads";
import type { Statement } from "../engine/cdc/apply";
import { handOverSettlements, type StampedFailure, settlementPending } from "../engine/cdc/origin-settlement";
import { TargetApplier } from "../engine/cdc/target-applier";

const { url, origin, settlements } = workerData as {
  url: string;
  origin: string;
  settlements: StampedFailure[];
};
const port = parentPort;
if (!port) throw new Error("settlement-thread-probe.ts runs only as a worker thread");
handOverSettlements(settlements, (message) => port.postMessage(message));

const ins = (id: number): Statement => ({
  name: "brk_settle_thread_ins",
  text: "insert into items (id, v) values ($1::bigint, 'x')",
  values: [String(id)],
});
const stamp = (lsn: bigint) => ({ lsn, commitTimeIso: new Date().toISOString() });

let target: TargetApplier | null = null;

port.on("message", async (m: { cmd: "open" } | { cmd: "apply"; id: number; stamp: bigint }) => {
  try {
    if (m.cmd === "open") {
      target = await TargetApplier.open({ url, origin, ordinal: 0, statementTimeoutMs: 1500 });
      target.onLost(() => {});
      const pid = (await target.connection.query("select pg_backend_pid() as pid")).rows[0].pid;
      port.postMessage({ ok: true, appliedUpTo: target.appliedUpTo, pid });
    } else {
      await target?.apply([ins(m.id)], stamp(m.stamp));
      port.postMessage({ ok: true });
    }
  } catch (error) {
    port.postMessage({ ok: false, error: (error as Error).message, pending: settlementPending(url, origin) });
  }
});
port.postMessage({ ready: true });
