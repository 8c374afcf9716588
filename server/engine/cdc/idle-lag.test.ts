import { describe, expect, it } from "vitest";
import { caughtUp, IdleLag } from "./idle-lag";

describe("caughtUp", () => {
  it("holds when the stream received the insert position or beyond", () => {
    expect(caughtUp(1000n, 1000n)).toBe(true);
    expect(caughtUp(1001n, 1000n)).toBe(true);
  });
  it("does not hold when WAL was written past what the stream received", () => {
    expect(caughtUp(1000n, 1001n)).toBe(false);
    expect(caughtUp(8192n * 3n - 8n, 8192n * 3n + 24n)).toBe(false);
  });
  it("holds across a page header only: the insert position just past a page the last record ended at", () => {
    expect(caughtUp(8192n * 3n, 8192n * 3n + 24n)).toBe(true);
    expect(caughtUp(8192n * 3n, 8192n * 3n + 40n)).toBe(true);
    expect(caughtUp(8192n * 3n, 8192n * 3n + 64n)).toBe(false);
  });
});

describe("IdleLag", () => {
  it("is 0 for a stream that received the source's insert position", () => {
    expect(new IdleLag().judge(1000n, 5, 1000n, 0)).toBe(0);
  });

  it("on a server whose other databases always write: when the source's WAL reached what was received", () => {
    const lag = new IdleLag();
    // Behind the first reading of the insert position: nothing known yet.
    expect(lag.judge(500n, 0, 1000n, 0)).toBeNull();
    // Received exactly what the source had written at 0: received at 1,000, so 1,000 ms late at most.
    expect(lag.judge(1000n, 1000, 2000n, 1000)).toBe(1000);
    // Halfway between the readings at 1,000 (2000) and 2,000 (3000): reached at 1,500.
    expect(lag.judge(2500n, 2000, 3000n, 2000)).toBe(500);
    // A stream that stops receiving falls behind by the clock.
    expect(lag.judge(2500n, 3000, 4000n, 3000)).toBe(1500);
    expect(lag.judge(2500n, 4000, 5000n, 4000)).toBe(2500);
  });
});
