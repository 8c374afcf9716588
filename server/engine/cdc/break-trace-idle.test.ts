// Adversarial (brk22): the stage trace's loop-delay sampler (stage-trace.ts, bench only) starts
// with a CDC thread's first stream, so that a thread warmed at boot and idle does not wake for
// nothing (at 1 ms it took 25 ms a second of a core at the CDC's raised priority). Once the thread's
// last stream ended, the thread is just as idle again: the sampler must not keep waking it (200
// times a second at 5 ms) nor keep writing lines for a thread that streams nothing. Linux only
// (/proc): the thread is found by the nice value it asked for.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { niceOf } from "../../testing/thread-priority-probe";
import { startIsolatedRunner, stopCdcThread } from "./isolated-runner";

const NICE = 7;
let control: TestDatabase;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "brk22-trace-"));
const trace = path.join(dir, "trace");
const saved = { trace: process.env.SHARDSHIFT_CDC_TRACE, nice: process.env.SHARDSHIFT_CDC_NICE };

beforeAll(async () => {
  control = await createTestDatabase("brk_trace_idle");
  process.env.SHARDSHIFT_CDC_TRACE = trace;
  process.env.SHARDSHIFT_CDC_NICE = String(NICE);
});

afterAll(async () => {
  await stopCdcThread();
  if (saved.trace === undefined) delete process.env.SHARDSHIFT_CDC_TRACE;
  else process.env.SHARDSHIFT_CDC_TRACE = saved.trace;
  if (saved.nice === undefined) delete process.env.SHARDSHIFT_CDC_NICE;
  else process.env.SHARDSHIFT_CDC_NICE = saved.nice;
  await control?.drop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Threads of this process at our nice value (the CDC thread that asked for it), by task id. */
function cdcTasks(): string[] {
  return fs.readdirSync("/proc/self/task").filter((tid) => {
    try {
      return niceOf(`/proc/self/task/${tid}/stat`) === NICE;
    } catch {
      return false;
    }
  });
}

/** How many times a thread was put on a core so far (schedstat's third field). */
function runs(tid: string): number {
  return Number(fs.readFileSync(`/proc/self/task/${tid}/schedstat`, "utf8").trim().split(" ")[2]);
}

async function wakeupsPerSecond(tids: string[], ms: number): Promise<number> {
  const before = tids.map(runs);
  await new Promise((r) => setTimeout(r, ms));
  const after = tids.map(runs);
  return (after.reduce((a, b) => a + b, 0) - before.reduce((a, b) => a + b, 0)) / (ms / 1000);
}

async function until(what: string, check: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("the loop-delay sampler of a CDC thread whose streams ended", () => {
  it.runIf(process.platform === "linux")("stops waking the idle thread and writing lines", async () => {
    // A reverse stream of a plan that does not exist: it takes its lock on the control plane (a real
    // server), finds no movement and ends, leaving its thread with no stream.
    const runner = startIsolatedRunner(
      {
        direction: "reverse",
        planId: "00000000-0000-0000-0000-000000000000",
        ordinal: 0,
        controlPlaneUrl: control.url,
      },
      { log: () => {} },
    );
    await runner.ended;
    await until("the CDC thread at its nice value", () => cdcTasks().length > 0);
    const tids = cdcTasks();
    // The sampler wrote its first line a second after it started (the thread was streaming then).
    await until("the sampler's first line", () => fs.existsSync(`${trace}.loop`), 5_000).catch(() => {});
    const rate = await wakeupsPerSecond(tids, 2_000);
    const linesBefore = fs.existsSync(`${trace}.loop`) ? fs.readFileSync(`${trace}.loop`, "utf8") : "";
    await new Promise((r) => setTimeout(r, 2_500));
    const linesAfter = fs.existsSync(`${trace}.loop`) ? fs.readFileSync(`${trace}.loop`, "utf8") : "";
    console.log(`idle CDC thread(s) ${tids.join(",")}: ${rate.toFixed(0)} wake-ups/s`);
    expect(rate, "wake-ups a second of the idle thread").toBeLessThan(50);
    expect(linesAfter.length - linesBefore.length, "lines written for an idle thread").toBe(0);
  });
});
