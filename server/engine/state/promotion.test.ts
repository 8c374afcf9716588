import { describe, expect, it } from "vitest";
import { nextPromotionStatus } from "./promotion";

describe("promotion state machine", () => {
  it("runs, pauses, resumes and finishes", () => {
    expect(nextPromotionStatus("requested", "claimed")).toEqual({ ok: true, to: "running" });
    expect(nextPromotionStatus("running", "pause")).toEqual({ ok: true, to: "paused" });
    expect(nextPromotionStatus("paused", "resume")).toEqual({ ok: true, to: "running" });
    expect(nextPromotionStatus("running", "finished")).toEqual({ ok: true, to: "done" });
  });

  it("a stop drains to stopped; a failing gate drains to failed", () => {
    expect(nextPromotionStatus("running", "stop")).toEqual({ ok: true, to: "stopping" });
    expect(nextPromotionStatus("stopping", "drained", "operator")).toEqual({ ok: true, to: "stopped" });
    expect(nextPromotionStatus("paused", "gate-failed")).toEqual({ ok: true, to: "stopping" });
    expect(nextPromotionStatus("stopping", "drained", "gate")).toEqual({ ok: true, to: "failed" });
  });

  it("refuses what its state does not allow, saying why", () => {
    const paused = nextPromotionStatus("paused", "pause");
    expect(paused.ok).toBe(false);
    expect(!paused.ok && paused.reason).toMatch(/already paused/);
    const ended = nextPromotionStatus("done", "pause");
    expect(!ended.ok && ended.reason).toMatch(/has ended/);
    expect(nextPromotionStatus("stopping", "resume").ok).toBe(false);
    expect(nextPromotionStatus("running", "resume").ok).toBe(false);
  });

  it("an ended promotion reopens only to retry a tenant", () => {
    for (const ended of ["done", "stopped", "failed"] as const) {
      expect(nextPromotionStatus(ended, "retry")).toEqual({ ok: true, to: "running" });
      expect(nextPromotionStatus(ended, "stop").ok).toBe(false);
    }
  });
});
