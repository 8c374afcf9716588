// Adversarial (brk20): CDC threads warmed at the worker's boot (warmCdcThreads, worker.ts) say what
// priority they got — or, as a warning to the operator, that raising it was refused — while they
// load. The process relayed a thread's log lines to the logger of the last runner started, and at
// boot none had been: both lines were dropped (seen: no line at all; expected one per thread).
// Fixed: warmCdcThreads takes the worker's log.
import { afterAll, describe, expect, it } from "vitest";
import { stopCdcThread, warmCdcThreads } from "./isolated-runner";

afterAll(async () => {
  await stopCdcThread();
});

describe("CDC threads warmed at boot", () => {
  it("relay what they log while they load to the worker's log", async () => {
    const lines: string[] = [];
    // A nice value any thread may take (raising it needs no privilege): the thread reports it.
    const saved = process.env.SHARDSHIFT_CDC_NICE;
    process.env.SHARDSHIFT_CDC_NICE = "1";
    try {
      await warmCdcThreads({ log: (m) => lines.push(m) });
    } finally {
      if (saved === undefined) delete process.env.SHARDSHIFT_CDC_NICE;
      else process.env.SHARDSHIFT_CDC_NICE = saved;
    }
    // The thread logs before it says it is ready: both lines are in by now.
    expect(lines.filter((m) => /CDC thread scheduled at nice 1/.test(m))).toHaveLength(2);
  }, 120_000);
});
