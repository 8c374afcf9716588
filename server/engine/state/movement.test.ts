// The movement state machine's refusals say what happened (usually a race lost to another
// operator), and a failure never overwrites a cancel.
import { describe, expect, it } from "vitest";
import { nextMovementStatus } from "./movement";

describe("movement state machine", () => {
  it("moves through the lifecycle", () => {
    expect(nextMovementStatus("cancelled", "start")).toEqual({ ok: true, to: "preparing" });
    expect(nextMovementStatus("preparing", "prepared")).toEqual({ ok: true, to: "running" });
    expect(nextMovementStatus("preparing", "abandon")).toEqual({ ok: true, to: "cancelled" });
    expect(nextMovementStatus("running", "pause")).toEqual({ ok: true, to: "paused" });
    expect(nextMovementStatus("paused", "cancel")).toEqual({ ok: true, to: "cancelling" });
    expect(nextMovementStatus("cancelling", "cancelled")).toEqual({ ok: true, to: "cancelled" });
  });

  it("a failure while cancelling keeps the cancel", () => {
    expect(nextMovementStatus("cancelling", "fail")).toEqual({ ok: true, to: "cancelling" });
  });

  it("refusals name the status that won", () => {
    const reason = (
      from: Parameters<typeof nextMovementStatus>[0],
      event: Parameters<typeof nextMovementStatus>[1],
    ) => {
      const outcome = nextMovementStatus(from, event);
      return outcome.ok ? null : outcome.reason;
    };
    expect(reason("paused", "pause")).toBe("The data movement is already paused.");
    expect(reason("running", "resume")).toBe("The data movement is already running.");
    expect(reason("cancelling", "pause")).toMatch(/already cancelling/);
    expect(reason("cancelling", "cancel")).toMatch(/already cancelling/);
    expect(reason("running", "start")).toMatch(/already running: it runs once/);
    expect(reason("preparing", "start")).toMatch(/being started right now/);
    expect(reason("cancelled", "pause")).toMatch(/was cancelled; start a new one/);
    expect(reason("running", "prepared")).toMatch(/Cannot prepared/);
  });
});
