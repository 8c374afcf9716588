import { describe, expect, it } from "vitest";
import { caughtUp } from "./idle-lag";

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
