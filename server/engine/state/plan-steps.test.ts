import { describe, expect, it } from "vitest";
import { DEFAULT_PLAN_SETTINGS, type PlanPhase } from "../../schemas/plan";
import type { EngineFacts } from "./plan-facts";
import { describeSteps, type StepView } from "./plan-steps";

const now = new Date("2026-12-01T12:00:00Z");
const minutesAgo = (m: number) => new Date(now.getTime() - m * 60_000);
const running: EngineFacts = {
  movement: { status: "running", confirmedLsn: "0/16B3748", lastError: null },
  backfill: { tables: 9, tablesDone: 4, rowsCopied: 12_345, finishedAt: null },
  lag: { ms: 7.4, at: minutesAgo(0) },
  parity: { lastFull: null, openMismatches: 0, checking: false },
};
const steps = (engine: EngineFacts | undefined, phase: PlanPhase = "async_backfill") =>
  Object.fromEntries(
    describeSteps({
      phase,
      status: "active",
      phaseEnteredAt: now,
      settings: DEFAULT_PLAN_SETTINGS,
      now,
      engine,
      shardKeyColumn: "tenant_id",
    }).map((s) => [s.phase, s]),
  ) as Record<PlanPhase, StepView>;

describe("the DATA-BALANCE timeline", () => {
  it("shows what runs at once, each step with its evidence, and what does not exist yet", () => {
    const s = steps(running);
    expect(s.two_way_cdc).toMatchObject({ state: "running", stale: false });
    expect(s.two_way_cdc.evidence).toMatch(/lag 7 ms, measured 0 s ago\. Confirmed up to 0\/16B3748/);
    expect(s.async_backfill).toMatchObject({
      state: "running",
      evidence: "4 of 9 tables copied (12,345 rows).",
    });
    expect(s.automated_parity).toMatchObject({ state: "not_started" });
    expect(s.bit_by_bit_routing).toMatchObject({
      state: "not_started",
      evidence: "No tenant is on a shard yet: draw the cohort ladder on Cohorts.",
    });
    expect(s.live_rollback).toMatchObject({ state: "not_started" });
    expect(s.native_cleanup).toMatchObject({
      state: "not_available",
      evidence: expect.stringMatching(/^Not available yet/),
    });
  });

  it("follows the tenants through bit-by-bit routing: counts from the routing map and the ladder", () => {
    const tenants = { ...running, tenantsTotal: 200, tenantsCuttingOver: 0, lastToShardAt: null };
    const drawn = { drawn: 4, promoted: 0, firstGates: null };
    expect(steps({ ...tenants, tenantsOnShards: 0, cohorts: drawn }).bit_by_bit_routing).toMatchObject({
      state: "not_started",
      evidence: "No tenant is on a shard yet; the ladder has 4 cohorts: promote cohort 1 on Cohorts.",
    });
    expect(
      steps({ ...tenants, tenantsOnShards: 10, tenantsCuttingOver: 8, cohorts: { ...drawn, promoted: 2 } })
        .bit_by_bit_routing,
    ).toMatchObject({
      state: "running",
      evidence: "10 of 200 tenants on shards; cohort 2 of 4 wholly on shards; 8 cutting over.",
    });
    expect(
      steps({ ...tenants, tenantsOnShards: 200, cohorts: { ...drawn, promoted: 4 } }).bit_by_bit_routing,
    ).toMatchObject({
      state: "done",
      evidence: "All 200 tenants are on their shards; cohort 4 of 4 wholly on shards.",
    });
  });

  it("soaks the breaker only while it is armed with every tenant on the shards", () => {
    const all = {
      ...running,
      tenantsTotal: 200,
      tenantsOnShards: 200,
      lastToShardAt: minutesAgo(60 * 24 * 3),
      breaker: { status: "armed" as const, armedSince: null },
    };
    expect(steps(all).live_rollback).toMatchObject({
      state: "running",
      evidence: "Soaking: the breaker armed with every tenant on the shards since 3 days ago (3 of 14 days).",
    });
    expect(steps({ ...all, lastToShardAt: minutesAgo(60 * 24 * 15) }).live_rollback).toMatchObject({
      state: "done",
    });
    expect(steps({ ...all, breaker: { status: "tripped", armedSince: null } }).live_rollback).toMatchObject({
      state: "stopped",
      alert: true,
      evidence: "The breaker is tripped: the soak counts only while it is armed.",
    });
    expect(steps({ ...all, tenantsOnShards: 50 }).live_rollback).toMatchObject({
      state: "not_started",
      evidence: "Starts when every tenant is on a shard with the breaker armed (50 of 200 are now).",
    });
  });

  it("says how many tenants the map sends to a shard once any was cut over", () => {
    expect(steps(running, "two_way_cdc").application_router.evidence).toBe(
      "Every tenant is routed to legacy: none has moved.",
    );
    expect(steps({ ...running, tenantsOnShards: 3 }, "two_way_cdc").application_router).toMatchObject({
      state: "done",
      evidence:
        "3 tenants are routed to a shard (cut over on the routing page), every other tenant to legacy.",
    });
  });

  it("says the backfill is paused while it is", () => {
    const s = steps({ ...running, movement: { status: "paused", confirmedLsn: "0/1", lastError: null } });
    expect(s.async_backfill).toMatchObject({
      state: "paused",
      evidence: "Paused: 4 of 9 tables copied (12,345 rows).",
    });
  });

  it("marks an old lag reading stale instead of current", () => {
    const s = steps({ ...running, lag: { ms: 2, at: minutesAgo(3) } });
    expect(s.two_way_cdc).toMatchObject({ state: "running", stale: true });
    expect(s.two_way_cdc.evidence).toMatch(/3 min ago \(stale\)/);
  });

  it("calls parity clean only while it holds, and stale once CDC stopped", () => {
    const done: EngineFacts = {
      ...running,
      backfill: { tables: 9, tablesDone: 9, rowsCopied: 30_000, finishedAt: minutesAgo(30) },
      parity: {
        lastFull: { finishedAt: minutesAgo(4), rowsVerified: 30_000, rowsTotal: 30_000, differences: 0 },
        openMismatches: 0,
        checking: false,
      },
    };
    expect(steps(done).automated_parity).toMatchObject({ state: "done", stale: false });
    expect(steps(done).async_backfill).toMatchObject({
      state: "done",
      evidence: "All 9 tables copied (30,000 rows).",
    });
    const stopped = steps({
      ...done,
      movement: { status: "cancelled", confirmedLsn: null, lastError: null },
    });
    expect(stopped.automated_parity).toMatchObject({ state: "done", stale: true });
    expect(stopped.automated_parity.evidence).toMatch(/^Stale: .*CDC is not streaming/);
    expect(stopped.two_way_cdc).toMatchObject({ state: "not_started" });
    const drift = steps({ ...done, parity: { ...done.parity, openMismatches: 3 } });
    expect(drift.automated_parity).toMatchObject({
      state: "running",
      alert: true,
      evidence: expect.stringMatching(/^Drift: 3 rows/),
    });
  });

  it("shows nothing as done that never ran", () => {
    const s = steps(undefined, "application_router");
    expect(s.define_key.state).toBe("done");
    expect(s.application_router.state).toBe("done");
    expect(s.two_way_cdc.state).toBe("not_started");
    expect(s.async_backfill.state).toBe("not_started");
    expect(s.automated_parity.state).toBe("not_started");
  });
});
