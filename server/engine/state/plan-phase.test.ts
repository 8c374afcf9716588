import { describe, expect, it } from "vitest";
import { DEFAULT_PLAN_SETTINGS, type PlanPhase } from "../../schemas/plan";
import type { EngineFacts } from "./plan-facts";
import { decideTransition, exitBlocked, type PlanFacts } from "./plan-phase";

const now = new Date("2026-11-24T12:00:00Z");
const facts = (phase: PlanPhase, extra: Partial<PlanFacts> = {}): PlanFacts => ({
  phase,
  status: "active",
  phaseEnteredAt: now,
  settings: DEFAULT_PLAN_SETTINGS,
  now,
  ...extra,
});

const minutesAgo = (m: number) => new Date(now.getTime() - m * 60_000);
const streaming = { status: "running" as const, confirmedLsn: "0/1A2B3C", lastError: null };
const cleanFull = { finishedAt: minutesAgo(5), rowsVerified: 30_000, rowsTotal: 30_000, differences: 0 };
const everythingDone: EngineFacts = {
  movement: streaming,
  backfill: { tables: 9, tablesDone: 9, rowsCopied: 30_000, finishedAt: minutesAgo(40) },
  lag: { ms: 3, at: minutesAgo(0) },
  parity: { lastFull: cleanFull, openMismatches: 0, checking: false },
  // Every tenant on its shard for 30 days with the breaker armed since before the last arrival.
  tenantsTotal: 200,
  tenantsOnShards: 200,
  tenantsCuttingOver: 0,
  lastToShardAt: minutesAgo(60 * 24 * 30),
  cohorts: { drawn: 4, promoted: 4, firstGates: null },
  breaker: { status: "armed", armedSince: null },
};
/** Backfilled, the ladder drawn, nobody on a shard yet. */
const ladderDrawn: EngineFacts = {
  ...everythingDone,
  tenantsOnShards: 0,
  lastToShardAt: null,
  cohorts: { drawn: 4, promoted: 0, firstGates: { open: true, why: null } },
};

describe("plan phase state machine", () => {
  it("advances only as far as the engine's facts allow, never into a step that does not exist yet", () => {
    let phase: PlanPhase = "define_key";
    const seen: PlanPhase[] = [phase];
    for (;;) {
      const outcome = decideTransition(facts(phase, { engine: everythingDone }), "advance");
      if (!outcome.allowed) {
        expect(outcome.reason).toMatch(/“Native clean-up” is not available yet/);
        break;
      }
      phase = outcome.to.phase;
      seen.push(phase);
    }
    expect(seen).toEqual([
      "define_key",
      "application_router",
      "two_way_cdc",
      "async_backfill",
      "bit_by_bit_routing",
      "automated_parity",
      "live_rollback",
    ]);
  });

  it("leaves Two-way CDC only once the stream runs and has confirmed changes", () => {
    const refused = decideTransition(facts("two_way_cdc"), "advance");
    expect(refused).toEqual({
      allowed: false,
      reason: expect.stringMatching(/not streaming: start the data movement/),
    });
    const unconfirmed = decideTransition(
      facts("two_way_cdc", { engine: { ...everythingDone, movement: { ...streaming, confirmedLsn: null } } }),
      "advance",
    );
    expect(unconfirmed).toEqual({
      allowed: false,
      reason: expect.stringMatching(/not confirmed any change/),
    });
    const failed = decideTransition(
      facts("two_way_cdc", { engine: { ...everythingDone, movement: { ...streaming, status: "failed" } } }),
      "advance",
    );
    expect(failed).toEqual({ allowed: false, reason: expect.stringMatching(/stopped with an error/) });
  });

  it("does not call the backfill done while a table is still copying", () => {
    const copying = {
      ...everythingDone,
      backfill: { ...everythingDone.backfill, tablesDone: 7, finishedAt: null },
    };
    expect(exitBlocked(facts("async_backfill", { engine: copying }))).toMatch(/7 of 9 tables are copied/);
    expect(exitBlocked(facts("async_backfill", { engine: ladderDrawn }))).toBeNull();
  });

  it("enters bit-by-bit routing only when cohort 1 may be promoted", () => {
    const enter = (engine: EngineFacts) => exitBlocked(facts("async_backfill", { engine }));
    expect(enter({ ...ladderDrawn, cohorts: null })).toMatch(/No cohort ladder is drawn: draw it on Cohorts/);
    const gates = { open: false, why: "Forward lag (legacy → shards) is inconclusive: no sample yet." };
    expect(enter({ ...ladderDrawn, cohorts: { drawn: 4, promoted: 0, firstGates: gates } })).toMatch(
      /Cohort 1 may not be promoted yet: Forward lag .* inconclusive: no sample yet\. Advance once its gates pass/,
    );
    // Not judged (a caller that did not ask): refused, never waved through.
    expect(enter({ ...ladderDrawn, cohorts: { drawn: 4, promoted: 0, firstGates: null } })).toMatch(
      /Cohort 1's gates have not been judged/,
    );
    expect(enter(ladderDrawn)).toBeNull();
    // Already under way (an admin's override, or a tenant cut over by hand): the gates no longer decide.
    const begun = {
      ...ladderDrawn,
      tenantsOnShards: 3,
      cohorts: { drawn: 4, promoted: 0, firstGates: gates },
    };
    expect(enter(begun)).toBeNull();
  });

  it("leaves bit-by-bit routing only with every tenant on a shard and no cutover in flight", () => {
    const leave = (engine: EngineFacts) => exitBlocked(facts("bit_by_bit_routing", { engine }));
    expect(leave({ ...everythingDone, tenantsTotal: null, tenantsOnShards: 0 })).toMatch(
      /census has counted no tenant/,
    );
    expect(leave({ ...everythingDone, tenantsOnShards: 50 })).toMatch(
      /150 of 200 tenants are still on legacy: promote the remaining cohorts/,
    );
    expect(leave({ ...everythingDone, tenantsCuttingOver: 2 })).toMatch(
      /2 tenant cutovers are still in flight/,
    );
    expect(leave(everythingDone)).toBeNull();
    // Reverting it while tenants are on shards would leave the phase behind the facts.
    expect(decideTransition(facts("bit_by_bit_routing", { engine: everythingDone }), "revert")).toEqual({
      allowed: false,
      reason: expect.stringMatching(
        /200 tenants are on a shard: .*Roll them back to legacy \(the breaker\) first/,
      ),
    });
    expect(decideTransition(facts("bit_by_bit_routing", { engine: { ...ladderDrawn } }), "revert")).toEqual({
      allowed: true,
      to: { phase: "async_backfill", status: "active" },
    });
  });

  it("starts the breaker's soak with every tenant on the shards and the breaker armed", () => {
    const enter = (engine: EngineFacts) => exitBlocked(facts("automated_parity", { engine }));
    expect(enter({ ...everythingDone, tenantsOnShards: 199 })).toMatch(/1 of 200 tenants are on legacy/);
    expect(enter({ ...everythingDone, breaker: { status: "rolling_back", armedSince: null } })).toMatch(
      /The breaker is rolling back: the soak starts with it armed/,
    );
    expect(enter(everythingDone)).toBeNull();
  });

  it("counts the soak from the facts, not from the advance: a re-arm or a late arrival restarts it", () => {
    const leave = (engine: EngineFacts, enteredDaysAgo = 30) =>
      exitBlocked(facts("live_rollback", { engine, phaseEnteredAt: minutesAgo(60 * 24 * enteredDaysAgo) }));
    expect(leave(everythingDone)).toBeNull();
    // The phase was entered 30 days ago, but the breaker was re-armed 2 days ago.
    expect(
      leave({ ...everythingDone, breaker: { status: "armed", armedSince: minutesAgo(60 * 24 * 2) } }),
    ).toMatch(/The soak is not over: .* \(12 days left\)/);
    // The last tenant arrived 3 days ago.
    expect(leave({ ...everythingDone, lastToShardAt: minutesAgo(60 * 24 * 3) })).toMatch(/\(11 days left\)/);
    expect(leave({ ...everythingDone, breaker: { status: "rolled_back", armedSince: null } })).toMatch(
      /The breaker is rolled back: the soak counts only while it is armed/,
    );
    expect(leave({ ...everythingDone, tenantsOnShards: 120 })).toMatch(/Not every tenant is on the shards/);
  });

  it("does not pass parity before a clean full check of every row copied, while CDC streams", () => {
    const check = (engine: EngineFacts) => exitBlocked(facts("automated_parity", { engine }));
    expect(check(everythingDone)).toBeNull();
    const parity = everythingDone.parity;
    expect(check({ ...everythingDone, parity: { ...parity, lastFull: null } })).toMatch(
      /no full check has passed/,
    );
    expect(
      check({
        ...everythingDone,
        parity: { ...parity, lastFull: { ...cleanFull, finishedAt: minutesAgo(45) } },
      }),
    ).toMatch(/since the backfill finished/);
    expect(check({ ...everythingDone, parity: { ...parity, openMismatches: 2 } })).toMatch(/2 rows differ/);
    expect(
      check({ ...everythingDone, parity: { ...parity, lastFull: { ...cleanFull, rowsVerified: 29_000 } } }),
    ).toMatch(/verified 29,000 of 30,000 rows/);
    expect(check({ ...everythingDone, movement: null })).toMatch(/CDC is not streaming/);
    expect(
      check({
        ...everythingDone,
        backfill: { ...everythingDone.backfill, finishedAt: minutesAgo(60) },
        parity: { ...parity, lastFull: { ...cleanFull, finishedAt: minutesAgo(30) } },
      }),
    ).toMatch(/more than 20 min old/);
  });

  it("keeps a plan that sits in a step that does not exist yet from moving on", () => {
    const outcome = decideTransition(
      facts("native_cleanup", { engine: everythingDone, phaseEnteredAt: minutesAgo(60 * 24 * 30) }),
      "advance",
    );
    expect(outcome).toEqual({ allowed: false, reason: expect.stringMatching(/is not available yet/) });
    expect(decideTransition(facts("complete"), "advance")).toEqual({
      allowed: false,
      reason: expect.stringMatching(/complete/),
    });
  });

  it("reverts only where nothing irreversible happened", () => {
    expect(decideTransition(facts("define_key"), "revert").allowed).toBe(false);
    expect(decideTransition(facts("async_backfill"), "revert")).toEqual({
      allowed: true,
      to: { phase: "two_way_cdc", status: "active" },
    });
    expect(decideTransition(facts("native_cleanup"), "revert").allowed).toBe(false);
    expect(decideTransition(facts("automated_parity"), "revert")).toEqual({
      allowed: true,
      to: { phase: "bit_by_bit_routing", status: "active" },
    });
  });

  it("keeps the plan in Two-way CDC while a replication slot is held", () => {
    const outcome = decideTransition(facts("two_way_cdc", { replicationActive: true }), "revert");
    expect(outcome).toEqual({ allowed: false, reason: expect.stringMatching(/Cancel it first/) });
    expect(decideTransition(facts("two_way_cdc", { replicationActive: false }), "revert").allowed).toBe(true);
  });

  it("archives only while nothing runs, and an archived plan refuses everything", () => {
    expect(decideTransition(facts("define_key"), "archive")).toEqual({
      allowed: true,
      to: { phase: "define_key", status: "archived" },
    });
    const midway = decideTransition(facts("async_backfill"), "archive");
    expect(midway.allowed).toBe(false);
    for (const event of ["advance", "revert", "archive"] as const) {
      const outcome = decideTransition(facts("application_router", { status: "archived" }), event);
      expect(outcome).toEqual({ allowed: false, reason: expect.stringMatching(/archived/) });
    }
  });
});
