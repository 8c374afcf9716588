// Each cohort gate on facts built by hand: it passes on good facts, fails on bad ones, and is
// inconclusive — blocking, with the reason — when its facts are missing or stale.
import { describe, expect, it } from "vitest";
import { DEFAULT_PLAN_SETTINGS } from "../../schemas/plan";
import {
  breakerGate,
  cohortGates,
  forwardLagGate,
  gatesOpen,
  parityGate,
  reverseLagGate,
  soakGate,
  strayWritesGate,
} from "./cohort-gates";
import type { CohortFacts, MeasuredFacts } from "./facts";
import { evidenceHref, type Judgement, type Sample } from "./judgement";

const NOW = new Date("2026-12-03T12:00:00Z");
const settings = DEFAULT_PLAN_SETTINGS; // lag 5,000 ms, soak 30 min, window 5 min, clean parity required
const ago = (ms: number) => new Date(NOW.getTime() - ms);

/** One sample a second over the last `spanMs`, all `value` unless `at` overrides. */
function series(spanMs: number, value: number, at: Record<number, number> = {}): Sample[] {
  const out: Sample[] = [];
  for (let t = spanMs; t >= 0; t -= 1000) out.push({ at: ago(t), value: at[t] ?? value });
  return out;
}

function facts(over: Partial<MeasuredFacts> = {}): MeasuredFacts {
  return {
    now: NOW,
    forwardLag: series(6 * 60_000, 40),
    reverseLag: series(6 * 60_000, 60),
    forwardExpected: true,
    onShard: new Set(["a"]),
    parity: {
      lastFullAt: ago(5 * 60_000),
      lastCheckAt: ago(20_000),
      openByTenant: new Map(),
      unverifiedTenants: new Set(),
    },
    fencesInstalledAt: ago(3_600_000),
    strayWrites: [],
    shards: [
      { ordinal: 0, name: "shard-0", lastProbeAt: ago(2_000), reachable: true, lastReachableAt: ago(2_000) },
    ],
    sdk: [],
    trips: [],
    ...over,
  };
}

const cohort: CohortFacts = {
  ordinal: 2,
  tenants: ["a", "b", "c"],
  previous: { ordinal: 1, tenants: 1, onShard: 1, lastFlipAt: ago(45 * 60_000) },
};

function expectShape(j: Judgement) {
  expect(j.reason.length).toBeGreaterThan(10);
  expect(j.evidence.from.getTime()).toBeLessThanOrEqual(j.evidence.to.getTime());
}

describe("forward and reverse lag gates", () => {
  it("pass under the threshold for the whole window, with the worst value", () => {
    const j = forwardLagGate(facts({ forwardLag: series(6 * 60_000, 40, { 30000: 4_900 }) }), settings);
    expect([j.verdict, j.value, j.threshold]).toEqual(["pass", 4_900, 5_000]);
    expect(j.evidence).toMatchObject({ chart: "cdc-lag", from: ago(5 * 60_000), to: NOW });
    expectShape(j);
  });

  it("fail on one sample over the threshold within the window, but not before it", () => {
    const spike = forwardLagGate(facts({ forwardLag: series(6 * 60_000, 40, { 120000: 7_000 }) }), settings);
    expect([spike.verdict, spike.value]).toEqual(["fail", 7_000]);
    expect(spike.reason).toMatch(/7000 ms at 11:58:00, over the 5000 ms threshold/);
    const old = forwardLagGate(facts({ forwardLag: series(6 * 60_000, 40, { 330000: 7_000 }) }), settings);
    expect(old.verdict).toBe("pass");
  });

  it("are inconclusive when the lag is stale, missing, gappy or younger than the window", () => {
    const stale = series(6 * 60_000, 40).filter((s) => s.at <= ago(60_000));
    expect(forwardLagGate(facts({ forwardLag: stale }), settings)).toMatchObject({
      verdict: "inconclusive",
      value: null,
      reason: expect.stringMatching(/11:59:00, 60 s ago: the measurement is stale/),
    });
    expect(forwardLagGate(facts({ forwardLag: [] }), settings).reason).toMatch(
      /No forward lag has been measured yet/,
    );
    const gappy = series(6 * 60_000, 40).filter((s) => s.at < ago(200_000) || s.at > ago(150_000));
    expect(forwardLagGate(facts({ forwardLag: gappy }), settings)).toMatchObject({
      verdict: "inconclusive",
      reason: expect.stringMatching(/between 11:56:39 and 11:57:31 \(52 s\): the window has a gap/),
    });
    const young = forwardLagGate(facts({ forwardLag: series(60_000, 40) }), settings);
    expect(young.verdict).toBe("inconclusive");
    expect(young.reason).toMatch(/measured only since 11:59:00/);
  });

  it("reverse lag passes while no tenant is on a shard, and is judged once one is", () => {
    expect(reverseLagGate(facts({ onShard: new Set(), reverseLag: [] }), settings).verdict).toBe("pass");
    expect(reverseLagGate(facts({ reverseLag: [] }), settings).verdict).toBe("inconclusive");
    const high = reverseLagGate(facts({ reverseLag: series(6 * 60_000, 9_000) }), settings);
    expect([high.verdict, high.evidence.chart]).toEqual(["fail", "reverse-lag"]);
    expect(reverseLagGate(facts(), settings).verdict).toBe("pass");
  });
});

describe("parity gate", () => {
  it("passes when the cohort's tenants matched in a recent full check", () => {
    const j = parityGate(facts(), cohort, settings);
    expect([j.verdict, j.value, j.threshold]).toEqual(["pass", 0, 0]);
    expect(j.evidence).toMatchObject({ chart: "parity", from: ago(5 * 60_000), to: NOW });
  });

  it("fails on an open difference of one of the cohort's tenants, not of others", () => {
    const open = (m: [string, number][]) =>
      facts({ parity: { ...facts().parity, openByTenant: new Map(m) } });
    const j = parityGate(
      open([
        ["b", 2],
        ["z", 9],
      ]),
      cohort,
      settings,
    );
    expect([j.verdict, j.value]).toEqual(["fail", 2]);
    expect(j.reason).toMatch(/2 rows of 1 of the cohort's tenants differ from legacy \(e.g. b\)/);
    expect(parityGate(open([["z", 9]]), cohort, settings).verdict).toBe("pass");
    // Not required by the plan: passes and still reports the count.
    const relaxed = parityGate(open([["b", 2]]), cohort, { ...settings, requireCleanParity: false });
    expect([relaxed.verdict, relaxed.value]).toEqual(["pass", 2]);
  });

  it("is inconclusive with no full check, a stale one, or a cohort tenant it could not verify", () => {
    const p = facts().parity;
    expect(parityGate(facts({ parity: { ...p, lastFullAt: null } }), cohort, settings).reason).toMatch(
      /No full parity check has completed yet/,
    );
    const stale = parityGate(facts({ parity: { ...p, lastFullAt: ago(25 * 60_000) } }), cohort, settings);
    expect([stale.verdict, stale.reason]).toEqual([
      "inconclusive",
      expect.stringMatching(/more than 20 min ago/),
    ]);
    const unverified = parityGate(
      facts({ parity: { ...p, unverifiedTenants: new Set(["c"]) } }),
      cohort,
      settings,
    );
    expect([unverified.verdict, unverified.reason]).toEqual([
      "inconclusive",
      expect.stringMatching(/could not verify 1 of the cohort's tenants \(e.g. c\)/),
    ]);
  });
});

describe("soak gate", () => {
  it("passes once the previous cohort has run on its shards for the soak time; the first cohort has none", () => {
    expect(soakGate(facts(), cohort, settings)).toMatchObject({ verdict: "pass", value: 45, threshold: 30 });
    expect(soakGate(facts(), { ...cohort, ordinal: 1, previous: null }, settings).verdict).toBe("pass");
  });

  it("fails while soaking, or while the previous cohort is not wholly on its shards", () => {
    const young = soakGate(
      facts(),
      { ...cohort, previous: { ordinal: 1, tenants: 1, onShard: 1, lastFlipAt: ago(10 * 60_000) } },
      settings,
    );
    expect([young.verdict, young.value, young.reason]).toEqual([
      "fail",
      10,
      expect.stringMatching(/20 min to go/),
    ]);
    const partial = soakGate(
      facts(),
      { ...cohort, previous: { ordinal: 1, tenants: 4, onShard: 3, lastFlipAt: ago(60 * 60_000) } },
      settings,
    );
    expect([partial.verdict, partial.reason]).toEqual([
      "fail",
      expect.stringMatching(/1 of cohort 1's 4 tenants are not on their shard/),
    ]);
  });

  it("is inconclusive when the promotion's time is not recorded", () => {
    const j = soakGate(
      facts(),
      { ...cohort, previous: { ordinal: 1, tenants: 1, onShard: 1, lastFlipAt: null } },
      settings,
    );
    expect(j.verdict).toBe("inconclusive");
  });
});

describe("breaker gate", () => {
  const passing: Judgement[] = [];
  it("passes with no trip in the window and no failing rule", () => {
    expect(
      breakerGate(facts({ trips: [{ at: ago(10 * 60_000), message: "old" }] }), settings, passing).verdict,
    ).toBe("pass");
  });
  it("fails on a trip in the window, or a rule failing now", () => {
    const tripped = breakerGate(
      facts({ trips: [{ at: ago(60_000), message: "reverse lag 40 s" }] }),
      settings,
      passing,
    );
    expect([tripped.verdict, tripped.value]).toEqual(["fail", 1]);
    expect(tripped.reason).toMatch(/reverse lag 40 s/);
    const rule = {
      ...forwardLagGate(facts(), settings),
      verdict: "fail" as const,
      reason: "lag 40 s for 60 s",
    };
    expect(breakerGate(facts(), settings, [rule]).reason).toMatch(/A trip rule fails now: lag 40 s/);
  });
});

describe("stray writes gate", () => {
  const w = (msAgo: number, count = 1) => ({ at: ago(msAgo), database: "shard-0", tenant: "a", count });
  it("passes with no refused write in the window", () => {
    expect(strayWritesGate(facts({ strayWrites: [w(10 * 60_000)] }), cohort, settings)).toMatchObject({
      verdict: "pass",
      value: 0,
    });
  });
  it("fails on a refused write in the window, counting folded ones", () => {
    const j = strayWritesGate(facts({ strayWrites: [w(60_000), w(30_000, 4)] }), cohort, settings);
    expect([j.verdict, j.value, j.evidence.chart]).toEqual(["fail", 5, "stray-writes"]);
    // Counted since the promotion began when that is later than the window's start.
    const since = strayWritesGate(
      facts({ strayWrites: [w(60_000)] }),
      { ...cohort, promotionStartedAt: ago(30_000) },
      settings,
    );
    expect(since.verdict).toBe("pass");
  });
  it("is inconclusive without fences, or while a shard cannot be read", () => {
    expect(strayWritesGate(facts({ fencesInstalledAt: null }), cohort, settings).reason).toMatch(
      /fences are not installed/,
    );
    const down = facts({
      shards: [
        {
          ordinal: 0,
          name: "shard-0",
          lastProbeAt: ago(1_000),
          reachable: false,
          lastReachableAt: ago(90_000),
        },
      ],
    });
    expect(strayWritesGate(down, cohort, settings)).toMatchObject({
      verdict: "inconclusive",
      reason: expect.stringMatching(/shard-0 did not answer/),
    });
  });
});

describe("all gates", () => {
  it("open only when every gate passes, naming the first that blocks", () => {
    const good = cohortGates(facts(), cohort, settings, []);
    expect(good.map((g) => [g.id, g.verdict])).toEqual([
      ["forward-lag", "pass"],
      ["reverse-lag", "pass"],
      ["parity", "pass"],
      ["soak", "pass"],
      ["breaker", "pass"],
      ["stray-writes", "pass"],
    ]);
    expect(gatesOpen(good)).toEqual({ open: true });
    const blocked = gatesOpen(cohortGates(facts({ forwardLag: [] }), cohort, settings, []));
    expect(blocked.open ? null : blocked.blockedBy.id).toBe("forward-lag");
  });

  it("links evidence to the chart's page and window", () => {
    const j = forwardLagGate(facts(), settings);
    expect(evidenceHref("p1", j.evidence)).toBe(
      "/plans/p1/backfill?chart=cdc-lag&from=2026-12-03T11%3A55%3A00.000Z&to=2026-12-03T12%3A00%3A00.000Z",
    );
  });
});
