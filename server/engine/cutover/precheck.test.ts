import { describe, expect, it } from "vitest";
import { lagBlocker } from "./precheck";
import { pausesAt } from "./run-cutover";

describe("cutover pre-check", () => {
  it("stops a cutover whose feeding stream is not running or too far behind for the budget", () => {
    expect(lagBlocker("to-shard", null, 2000)).toMatch(/forward replication .* is not running/);
    expect(lagBlocker("to-legacy", null, 2000)).toMatch(/reverse replication .* is not running/);
    expect(lagBlocker("to-shard", 1200, 2000)).toMatch(
      /1200 ms behind; a 2000 ms freeze budget allows at most 1000 ms/,
    );
    expect(lagBlocker("to-shard", 900, 2000)).toBeNull();
  });
});

describe("the crash tests' pause hook", () => {
  it("holds every attempt at a status, or only the named tenants' ones", () => {
    expect(pausesAt("fencing", "fencing", "7")).toBe(true);
    expect(pausesAt("fencing", "draining", "7")).toBe(false);
    expect(pausesAt("fencing:4,flipped:7", "flipped", "7")).toBe(true);
    expect(pausesAt("fencing:4,flipped:7", "flipped", "4")).toBe(false);
    expect(pausesAt(null, "fencing", "4")).toBe(false);
  });
});
