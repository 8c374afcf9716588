import { describe, expect, it } from "vitest";
import { type CutoverEvent, type CutoverStatus, nextCutoverStatus, recoveryFor } from "./cutover";

const walk = (events: CutoverEvent[]) =>
  events.reduce<CutoverStatus>((status, event) => {
    const next = nextCutoverStatus(status, event);
    if (!next.ok) throw new Error(next.reason);
    return next.to;
  }, "prechecking");

describe("cutover state machine", () => {
  it("walks the protocol to done, and aborts from any step before the flip", () => {
    expect(walk(["fenced", "quiesced", "flipped", "finished"])).toBe("done");
    expect(walk(["precheck-failed"])).toBe("aborted");
    expect(walk(["fenced", "abort", "aborted"])).toBe("aborted");
    expect(walk(["fenced", "quiesced", "abort", "aborted"])).toBe("aborted");
  });

  it("never goes back once flipped, and says what to do instead", () => {
    const refused = nextCutoverStatus("flipped", "abort");
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refused.reason).toContain("other direction");
    expect(nextCutoverStatus("draining", "finished").ok).toBe(false);
    expect(nextCutoverStatus("done", "abort").ok).toBe(false);
  });

  it("a restarted worker aborts before the commit point and finishes after it", () => {
    expect(
      ["prechecking", "fencing", "draining", "aborting"].map((s) => recoveryFor(s as CutoverStatus)),
    ).toEqual(["abort", "abort", "abort", "abort"]);
    expect(recoveryFor("flipped")).toBe("finish");
    expect(recoveryFor("done")).toBe("none");
  });

  it("a request waits for a worker to claim it; nothing to recover before that", () => {
    expect(nextCutoverStatus("requested", "claimed")).toEqual({ ok: true, to: "prechecking" });
    expect(nextCutoverStatus("requested", "fenced").ok).toBe(false);
    expect(recoveryFor("requested")).toBe("none");
  });
});
