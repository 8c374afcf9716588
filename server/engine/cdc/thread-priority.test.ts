// The CDC thread's priority (thread-priority.ts) is the calling thread's alone: the worker's other
// threads keep theirs. Linux only (/proc).
import { describe, expect, it } from "vitest";
import { niceOf } from "../../testing/thread-priority-probe";
import { startTsThread } from "../shared/ts-thread";
import { CDC_THREAD_NICE, cdcThreadNice, describePriority, type PriorityOutcome } from "./thread-priority";

async function inThread(nice: number): Promise<{ outcome: PriorityOutcome; threadNice: number }> {
  const thread = startTsThread(new URL("../../testing/thread-priority-probe.ts", import.meta.url), {
    workerData: { nice },
  });
  try {
    return await new Promise((resolve, reject) => {
      thread.once("message", resolve);
      thread.once("error", reject);
    });
  } finally {
    await thread.terminate();
  }
}

const mainNice = () => niceOf(`/proc/self/task/${process.pid}/stat`);

describe("the CDC thread's priority", () => {
  it("is set on the calling thread only", async () => {
    const before = mainNice();
    const lower = await inThread(before + 5);
    expect(lower).toEqual({ outcome: { applied: true, nice: before + 5 }, threadNice: before + 5 });
    expect(mainNice()).toBe(before);
  });

  it("rises where the worker may raise it, and says why where it may not", async () => {
    const before = mainNice();
    const { outcome, threadNice } = await inThread(CDC_THREAD_NICE);
    if (process.getuid?.() === 0) {
      expect(outcome).toEqual({ applied: true, nice: CDC_THREAD_NICE });
      expect(threadNice).toBe(CDC_THREAD_NICE);
    } else if (!outcome.applied) {
      expect(outcome.reason).toMatch(/privilege/);
      expect(describePriority(outcome)).toMatch(/stays at the worker's priority/);
    }
    expect(mainNice()).toBe(before);
  });

  it("reads SHARDSHIFT_CDC_NICE, and refuses what is not a nice value", () => {
    expect(cdcThreadNice({})).toBe(CDC_THREAD_NICE);
    expect(cdcThreadNice({ SHARDSHIFT_CDC_NICE: "0" })).toBe(0);
    expect(cdcThreadNice({ SHARDSHIFT_CDC_NICE: " -5 " })).toBe(-5);
    expect(() => cdcThreadNice({ SHARDSHIFT_CDC_NICE: "-21" })).toThrow(/-20 to 19/);
    expect(() => cdcThreadNice({ SHARDSHIFT_CDC_NICE: "high" })).toThrow(/-20 to 19/);
  });
});
