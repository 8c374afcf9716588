// Each breaker trip rule on facts built by hand: it passes on good facts, fails (trips) on bad
// ones, and is inconclusive — never tripping — when its facts are missing or stale.
import { describe, expect, it } from "vitest";
import { DEFAULT_PLAN_SETTINGS } from "../../schemas/plan";
import type { MeasuredFacts } from "./facts";
import type { Sample } from "./judgement";
import {
  forwardLagRule,
  parityDriftRule,
  reverseLagRule,
  sdkErrorRateRule,
  shardDownRule,
  strayWritesRule,
  tripping,
  tripRules,
} from "./trip-rules";

const NOW = new Date("2026-12-03T12:00:00Z");
// Drift > 0 rows, lag > 30 s for 60 s, shard down > 30 s, strays > 0, SDK errors > 5%.
const settings = DEFAULT_PLAN_SETTINGS;
const ago = (ms: number) => new Date(NOW.getTime() - ms);

function series(spanMs: number, value: number, at: Record<number, number> = {}): Sample[] {
  const out: Sample[] = [];
  for (let t = spanMs; t >= 0; t -= 1000) out.push({ at: ago(t), value: at[t] ?? value });
  return out;
}

const shard = (over: Partial<MeasuredFacts["shards"][number]> = {}) => ({
  ordinal: 0,
  name: "shard-0",
  lastProbeAt: ago(2_000),
  reachable: true,
  lastReachableAt: ago(2_000),
  ...over,
});
const sdk = (over: Partial<MeasuredFacts["sdk"][number]> = {}) => ({
  ordinal: 0,
  name: "shard-0",
  requests: 1_000,
  errors: 3,
  reportedAt: ago(5_000),
  ...over,
});

function facts(over: Partial<MeasuredFacts> = {}): MeasuredFacts {
  return {
    now: NOW,
    forwardLag: series(120_000, 40),
    reverseLag: series(120_000, 60),
    forwardExpected: true,
    onShard: new Set(["a", "b"]),
    parity: {
      lastFullAt: ago(5 * 60_000),
      lastCheckAt: ago(20_000),
      openByTenant: new Map(),
      unverifiedTenants: new Set(),
    },
    fencesInstalledAt: ago(3_600_000),
    strayWrites: [],
    shards: [shard()],
    sdk: [sdk()],
    trips: [],
    ...over,
  };
}

describe("parity drift rule", () => {
  const drift = (m: [string, number][], lastCheckAt: Date | null = ago(20_000)) =>
    facts({ parity: { ...facts().parity, lastCheckAt, openByTenant: new Map(m) } });
  it("passes with no drift on shards (drift of tenants still on legacy does not count)", () => {
    expect(parityDriftRule(drift([["z", 5]]), settings)).toMatchObject({
      verdict: "pass",
      value: 0,
      threshold: 0,
    });
  });
  it("trips above the threshold", () => {
    const j = parityDriftRule(
      drift([
        ["a", 2],
        ["z", 5],
      ]),
      settings,
    );
    expect([j.verdict, j.value, j.evidence.chart]).toEqual(["fail", 2, "parity"]);
    expect(parityDriftRule(drift([["a", 2]]), { ...settings, breakerParityDriftRows: 2 }).verdict).toBe(
      "pass",
    );
  });
  it("is inconclusive when no parity pass ran recently (but known drift still trips)", () => {
    expect(parityDriftRule(drift([], ago(10 * 60_000)), settings).verdict).toBe("inconclusive");
    expect(parityDriftRule(drift([], null), settings).reason).toMatch(/No parity pass has completed/);
    expect(parityDriftRule(drift([["a", 1]], ago(10 * 60_000)), settings).verdict).toBe("fail");
  });
});

describe("lag rules", () => {
  it("pass when lag dipped under the threshold within the window", () => {
    const j = forwardLagRule(facts({ forwardLag: series(120_000, 45_000, { 20000: 900 }) }), settings);
    expect([j.verdict, j.value]).toEqual(["pass", 900]);
  });
  it("trip when lag stayed above the threshold for the whole window", () => {
    const j = reverseLagRule(facts({ reverseLag: series(120_000, 45_000, { 90000: 10 }) }), settings);
    expect([j.verdict, j.value, j.threshold, j.evidence.chart]).toEqual([
      "fail",
      45_000,
      30_000,
      "reverse-lag",
    ]);
    expect(j.reason).toMatch(/stayed above 30000 ms for the last 60 s/);
  });
  it("are inconclusive (no trip) when the lag is no longer measured", () => {
    const stalled = series(120_000, 45_000).filter((s) => s.at < ago(40_000));
    const j = forwardLagRule(facts({ forwardLag: stalled }), settings);
    expect([j.verdict, j.reason]).toEqual(["inconclusive", expect.stringMatching(/stale/)]);
  });
  it("pass while no tenant is on a shard: nothing to roll back", () => {
    expect(reverseLagRule(facts({ onShard: new Set(), reverseLag: [] }), settings).verdict).toBe("pass");
  });
});

describe("shard down rule", () => {
  it("passes when every shard answered, or one has been down less than the limit", () => {
    expect(shardDownRule(facts(), settings).verdict).toBe("pass");
    const brief = shardDownRule(
      facts({ shards: [shard({ reachable: false, lastReachableAt: ago(10_000) })] }),
      settings,
    );
    expect([brief.verdict, brief.value]).toEqual(["pass", 10]);
  });
  it("trips when a shard has not answered for longer than the limit", () => {
    const j = shardDownRule(
      facts({
        shards: [
          shard(),
          shard({ ordinal: 1, name: "shard-1", reachable: false, lastReachableAt: ago(45_000) }),
        ],
      }),
      settings,
    );
    expect([j.verdict, j.value, j.threshold]).toEqual(["fail", 45, 30]);
    expect(j.reason).toMatch(/shard-1 has not answered since 11:59:15 \(45 s\)/);
  });
  it("is inconclusive when the probes stopped", () => {
    const j = shardDownRule(facts({ shards: [shard({ lastProbeAt: ago(120_000) })] }), settings);
    expect([j.verdict, j.reason]).toEqual(["inconclusive", expect.stringMatching(/shard-0 was not probed/)]);
  });
});

describe("stray writes rule", () => {
  const w = (msAgo: number, count = 1) => ({ at: ago(msAgo), database: "legacy", tenant: "a", count });
  it("passes with none in the window", () => {
    expect(strayWritesRule(facts({ strayWrites: [w(90_000)] }), settings)).toMatchObject({
      verdict: "pass",
      value: 0,
    });
  });
  it("trips above the threshold", () => {
    expect(strayWritesRule(facts({ strayWrites: [w(30_000, 3)] }), settings)).toMatchObject({
      verdict: "fail",
      value: 3,
    });
    expect(
      strayWritesRule(facts({ strayWrites: [w(30_000, 3)] }), { ...settings, breakerStrayWrites: 3 }).verdict,
    ).toBe("pass");
  });
  it("is inconclusive without fences", () => {
    expect(strayWritesRule(facts({ fencesInstalledAt: null }), settings).verdict).toBe("inconclusive");
  });
});

describe("SDK error rate rule", () => {
  it("passes under the threshold", () => {
    expect(sdkErrorRateRule(facts(), settings)).toMatchObject({ verdict: "pass", value: 0.3, threshold: 5 });
  });
  it("trips on the worst shard above the threshold", () => {
    const j = sdkErrorRateRule(
      facts({ sdk: [sdk(), sdk({ ordinal: 1, name: "shard-1", requests: 200, errors: 30 })] }),
      settings,
    );
    expect([j.verdict, j.value]).toEqual(["fail", 15]);
    expect(j.reason).toMatch(/30 of 200 queries to shard-1 failed/);
  });
  it("is inconclusive when the SDK has not reported", () => {
    expect(sdkErrorRateRule(facts({ sdk: [] }), settings).verdict).toBe("inconclusive");
    const silent = sdkErrorRateRule(facts({ sdk: [sdk({ reportedAt: ago(5 * 60_000) })] }), settings);
    expect([silent.verdict, silent.reason]).toEqual([
      "inconclusive",
      expect.stringMatching(/has not reported its queries to shard-0/),
    ]);
  });
});

describe("all rules", () => {
  it("trip only on failing rules, never on inconclusive ones", () => {
    expect(tripping(tripRules(facts(), settings))).toEqual([]);
    const blind = tripRules(
      facts({ forwardLag: [], reverseLag: [], sdk: [], fencesInstalledAt: null }),
      settings,
    );
    expect(blind.filter((r) => r.verdict === "inconclusive").map((r) => r.id)).toEqual([
      "forward-lag",
      "reverse-lag",
      "stray-writes",
      "sdk-error-rate",
    ]);
    expect(tripping(blind)).toEqual([]);
    const bad = tripRules(facts({ reverseLag: series(120_000, 60_000) }), settings);
    expect(tripping(bad).map((r) => r.id)).toEqual(["reverse-lag"]);
  });
});
