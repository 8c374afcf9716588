// The freeze gate's size comes from the environment: a typo must stop the worker with the reason,
// never leave the gate unbounded (NaN slots) or closed.
import { describe, expect, it } from "vitest";
import { freezesAtOnce } from "./cutover-scheduler";

describe("SHARDSHIFT_CUTOVER_FREEZES_AT_ONCE", () => {
  it("defaults to 1 and takes a whole number from 1 to 64", () => {
    expect(freezesAtOnce(undefined)).toBe(1);
    expect(freezesAtOnce(" ")).toBe(1);
    expect(freezesAtOnce("1")).toBe(1);
    expect(freezesAtOnce("8")).toBe(8);
  });

  it("refuses anything else with what to do", () => {
    for (const bad of ["two", "0", "-1", "2.5", "65"]) {
      expect(() => freezesAtOnce(bad)).toThrow(/whole number from 1 to 64.*unset it for the default/);
    }
  });
});
