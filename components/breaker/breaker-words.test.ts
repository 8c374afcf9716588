import { describe, expect, it } from "vitest";
import { parseTenantList, scopeOfForm, tripOutcome } from "./breaker-words";

const form = { kind: "tenants" as const, tenants: "", databaseId: "", ordinal: null, andLater: false };
const trip = {
  status: "rolled_back" as const,
  tenants: 3,
  tenantsMoved: 3,
  tenantsLeft: 0,
  error: null,
  tripToFlipMs: 1_400,
  freezeMs: 380,
  flipVersion: 7,
};

describe("breaker words", () => {
  it("reads a list of tenant keys typed any reasonable way", () => {
    expect(parseTenantList(" 42, 7\n42  9 ")).toEqual(["42", "7", "9"]);
  });

  it("names a scope only once the form does, and says what is missing otherwise", () => {
    expect(scopeOfForm(form)).toEqual({ missing: expect.stringContaining("tenant keys") });
    expect(scopeOfForm({ ...form, tenants: "1,2" })).toEqual({
      scope: { kind: "tenants", tenants: ["1", "2"] },
    });
    expect(scopeOfForm({ ...form, kind: "cohort", ordinal: 2, andLater: true })).toEqual({
      scope: { kind: "cohort", ordinal: 2, andLater: true },
    });
    expect(scopeOfForm({ ...form, kind: "shard" })).toEqual({ missing: expect.stringContaining("shard") });
  });

  it("says what a trip did: moved and paused, or what was left and why", () => {
    expect(tripOutcome(trip)).toBe(
      "3 tenants back on legacy 1.4 s after the trip; their writes paused for 380 ms. No acknowledged write was lost.",
    );
    expect(tripOutcome({ ...trip, status: "rolling_back" })).toBeNull();
    const failed = { ...trip, status: "failed" as const, tenantsMoved: 0, tenantsLeft: 3, flipVersion: null };
    expect(tripOutcome({ ...failed, error: "shard-1: reverse lag 9 s" })).toBe(
      "3 tenants left on their shards: shard-1: reverse lag 9 s",
    );
    // Re-armed: the outcome it had before stays readable.
    expect(tripOutcome({ ...failed, status: "armed", error: "gave up" })).toContain("left on their shards");
    expect(tripOutcome({ ...trip, status: "armed" })).toContain("3 tenants back on legacy");
  });
});
