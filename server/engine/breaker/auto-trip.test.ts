// Which tenants an automatic trip covers (docs/breaker.md, "Automatic trips"): a shard's own
// failure trips that shard's tenants, a plan-wide rule every tenant on the shards.
import { describe, expect, it } from "vitest";
import { DEFAULT_PLAN_SETTINGS } from "../../schemas/plan";
import type { MeasuredFacts } from "../gates/facts";
import { tripping, tripRules } from "../gates/trip-rules";
import { autoTripScope } from "./auto-trip";

const NOW = new Date("2026-12-03T12:00:00Z");
const ago = (ms: number) => new Date(NOW.getTime() - ms);
const ids = new Map([
  [0, "00000000-0000-4000-8000-000000000000"],
  [1, "11111111-1111-4111-8111-111111111111"],
]);

function facts(over: Partial<MeasuredFacts> = {}): MeasuredFacts {
  const lag = Array.from({ length: 200 }, (_, i) => ({ at: ago((199 - i) * 1000), value: 10 }));
  return {
    now: NOW,
    forwardLag: lag,
    reverseLag: lag,
    forwardExpected: true,
    onShard: new Set(["7", "8"]),
    parity: {
      lastFullAt: ago(1000),
      lastCheckAt: ago(1000),
      openByTenant: new Map(),
      unverifiedTenants: new Set(),
    },
    fencesInstalledAt: ago(600_000),
    strayWrites: [],
    shards: [0, 1].map((ordinal) => ({
      ordinal,
      name: `shard-${ordinal}`,
      lastProbeAt: ago(1000),
      reachable: true,
      lastReachableAt: ago(1000),
    })),
    sdk: [0, 1].map((ordinal) => ({
      ordinal,
      name: `shard-${ordinal}`,
      requests: 100,
      errors: 0,
      reportedAt: ago(1000),
    })),
    trips: [],
    ...over,
  };
}

const down = (ordinal: number) => ({
  ordinal,
  name: `shard-${ordinal}`,
  lastProbeAt: ago(1000),
  reachable: false,
  lastReachableAt: ago(60_000),
});
const up = (ordinal: number) => ({
  ordinal,
  name: `shard-${ordinal}`,
  lastProbeAt: ago(1000),
  reachable: true,
  lastReachableAt: ago(1000),
});

function scopeOf(f: MeasuredFacts) {
  const failing = tripping(tripRules(f, DEFAULT_PLAN_SETTINGS));
  return {
    ids: failing.map((j) => j.id),
    scope: autoTripScope(failing, (o) => ids.get(o)),
  };
}

describe("autoTripScope", () => {
  it("trips nothing on good facts", () => {
    expect(scopeOf(facts()).ids).toEqual([]);
  });

  it("trips the down shard's tenants when shard-down fires for one shard", () => {
    expect(scopeOf(facts({ shards: [up(0), down(1)] }))).toEqual({
      ids: ["shard-down"],
      scope: { kind: "shard", databaseId: ids.get(1) },
    });
  });

  it("trips the failing shard's tenants on sdk-error-rate", () => {
    const f = facts({
      sdk: [
        { ordinal: 0, name: "shard-0", requests: 100, errors: 40, reportedAt: ago(1000) },
        { ordinal: 1, name: "shard-1", requests: 100, errors: 0, reportedAt: ago(1000) },
      ],
    });
    expect(scopeOf(f)).toEqual({ ids: ["sdk-error-rate"], scope: { kind: "shard", databaseId: ids.get(0) } });
  });

  it("trips every tenant on the shards when two shards are down", () => {
    expect(scopeOf(facts({ shards: [down(0), down(1)] })).scope).toEqual({ kind: "all" });
  });

  it("trips every tenant on the shards on a plan-wide rule, even beside a shard rule", () => {
    const stray = { at: ago(5_000), database: "legacy", tenant: "7", count: 2 };
    expect(scopeOf(facts({ strayWrites: [stray] }))).toEqual({
      ids: ["stray-writes"],
      scope: { kind: "all" },
    });
    expect(scopeOf(facts({ strayWrites: [stray], shards: [up(0), down(1)] })).scope).toEqual({ kind: "all" });
  });
});
