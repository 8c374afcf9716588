// Issue 13's breaker figures (`--only breaker`): how long a trip of the breaker takes to hand N
// tenants back to legacy under the SDK write workload, for N = 100, 1,000 and every tenant of the
// dataset, each from a fresh "on shards" state.
//
// Each round:
//   1. forward replication caught up (a cutover's own readiness check), then the N tenants put on
//      their shards by ONE audited map change with fences and reverse slots (cutover-step.ts's
//      placeOnShardsByMap: the state N cutovers leave, without running them), reverse streams reading;
//   2. autovacuum waited out and a checkpoint taken (as before every lag test), then the SDK workload
//      (its own thread, sdk-workload-thread.ts; 1,000 writes/s asked by default) writing to those
//      tenants and as many that stay on legacy: the trip once it has run a second, and the writes
//      acknowledged in the second before the click reported as the load the freeze met;
//   3. the trip, through the services the UI calls: the dialog's preview (previewBreaker, read when
//      it opens), then the confirmation (tripBreaker, scope "every tenant on a shard"),
//      then the trip row polled until its rollback ended. "Click" is the bench's clock right before
//      the call; the flip and the end are the trip's own timestamps (same machine, same clock);
//   4. a second more of writes, the workload stopped and its ledger sample read back from each
//      tenant's owner (legacy now: every acknowledged write on a shard drained back), the map read
//      (no tenant left on a shard), the breaker re-armed (admin's call) for the next round.
// The rollback's own step times (freeze, fenced, drained, flipped, finished: the trip's `steps`) are
// logged as the profile of where the time goes.
import pg from "pg";
import { db } from "@/server/db";
import { previewBreaker, rearmBreaker, tripBreaker } from "@/server/services/breaker/breaker";
import { type BenchCluster, LEGACY_DB, SHARD_DB } from "./cluster";
import {
  planDatabaseUrls,
  type SdkWorkloadSummary,
  startCutoverWorkload,
  waitForCutoverReady,
  waitForReverseStreams,
  waitForWrites,
} from "./cutover";
import { placeOnShardsByMap, releaseTenantsForCancel, spread } from "./cutover-step";
import { benchActor } from "./movement";
import type { BenchOptions } from "./options";
import { type BenchReport, figure } from "./report";
import { pollUntil, sleep } from "./stats";

/** Issue 13's aim: every tenant back on legacy within 2 s of the click. */
export const BREAKER_FLIP_AIM_MS = 2_000;
/** Writes before the trip and after its end (the workload is steady when the freeze meets it). */
const WRITE_AROUND_MS = 1_000;
const TRIP_TIMEOUT_MS = 180_000;

export interface BreakerRound {
  tenants: number;
  /** The trip's end state: rolled_back, or failed (its error says why). */
  status: string;
  error: string | null;
  rolledBack: number;
  /** The bench's clock before tripBreaker → the flip's commit (every owner legacy in one version). */
  clickToFlipMs: number | null;
  /** → the rollback's end (unfrozen, fences lifted, trip rolled_back). */
  clickToEndMs: number | null;
  /** freeze_started_at → freeze_ended_at of the trip. */
  freezeMs: number | null;
  /** Each step of the trip, ms after the click. */
  profile: { step: string; atMs: number }[];
  sdk: SdkWorkloadSummary;
  /** SDK writes acknowledged in the second before the click (the load the freeze met). */
  steadyRate: number;
  /** Tenants a shard still owns after the rollback (0 expected when it rolled back). */
  leftOnShards: number;
}

export interface BreakerStepResult {
  rounds: BreakerRound[];
  /** Per-table row counts legacy vs shards after the last round (empty: equal). */
  rowProblems: string[];
}

/** N = 100, 1,000 and all: the sizes issue 13 names, within the dataset. */
export function breakerSizes(tenants: number): number[] {
  return [...new Set([100, 1_000, tenants].filter((n) => n <= tenants))];
}

export async function runBreakerStep(ctx: {
  planId: string;
  cluster: BenchCluster;
  tenantIds: readonly string[];
  options: BenchOptions;
  log: (line: string) => void;
  /** Row counts legacy vs shards (run-bench.ts's verifyCopy): problems, empty when equal. */
  verifyRows: () => Promise<string[]>;
  /** Before each round's writes: autovacuum done, a checkpoint (run-bench.ts). */
  settle?: () => Promise<void>;
}): Promise<BreakerStepResult> {
  const { planId, cluster, log } = ctx;
  await pollUntil(
    "the tenant census (the map and the breaker read the plan's tenants)",
    async () => (await db().dataMovement.findUnique({ where: { planId } }))?.censusAt,
    { timeoutMs: 120_000, intervalMs: 250 },
  );
  const { names, shardIds } = await planDatabaseUrls(planId, {
    legacy: cluster.legacy.url(LEGACY_DB),
    shards: cluster.shards.map((s) => s.url(SHARD_DB)),
  });
  const shardPools = cluster.shards.map((s) => new pg.Pool({ connectionString: s.url(SHARD_DB), max: 1 }));
  const rounds: BreakerRound[] = [];
  try {
    for (const size of breakerSizes(ctx.tenantIds.length)) {
      const round = await runRound(ctx, size, names, shardIds, shardPools);
      rounds.push(round);
      log(`    ${describeRound(round)}`);
      log(`    profile (ms after the click): ${round.profile.map((p) => `${p.step} ${p.atMs}`).join(", ")}`);
    }
  } catch (error) {
    // A round that failed half way may leave tenants on shards: the movement's cancel refuses that.
    await releaseTenantsForCancel(planId, log).catch(() => {});
    throw error;
  } finally {
    await Promise.all(shardPools.map((p) => p.end().catch(() => {})));
  }
  // Every row equal: forward replication carries legacy's writes (the rolled-back tenants' too) to
  // the shards; once it has caught up the per-table counts agree.
  let rowProblems: string[] = [];
  await pollUntil(
    "legacy's and the shards' row counts to agree after the breaker rounds",
    async () => {
      rowProblems = await ctx.verifyRows();
      return rowProblems.length === 0;
    },
    { timeoutMs: 60_000, intervalMs: 1_000 },
  ).catch(() => {});
  for (const p of rowProblems) log(`    warning: row counts differ after the breaker rounds: ${p}`);
  return { rounds, rowProblems };
}

async function runRound(
  ctx: {
    planId: string;
    tenantIds: readonly string[];
    options: BenchOptions;
    log: (line: string) => void;
    settle?: () => Promise<void>;
  },
  size: number,
  names: Record<string, string>,
  shardIds: readonly string[],
  shardPools: readonly pg.Pool[],
): Promise<BreakerRound> {
  const { planId, options, log } = ctx;
  const moved = spread(ctx.tenantIds, size);
  const movedSet = new Set(moved);
  const staying = ctx.tenantIds.filter((t) => !movedSet.has(t)).slice(0, moved.length);
  // 1. on shards, from a caught-up forward stream
  await waitForCutoverReady(
    planId,
    moved[0] as string,
    "forward replication to catch up before the map change",
  );
  await placeOnShardsByMap(
    planId,
    moved,
    shardIds,
    `bench: ${size} tenants put on their shards for a breaker trip`,
  );
  await waitForReverseStreams(
    planId,
    shardPools.map((pool, ordinal) => ({ pool, ordinal })),
  );
  await ctx.settle?.();
  // 2. writes
  const workload = await startCutoverWorkload({
    planId,
    databases: names,
    tenants: [...moved, ...staying],
    writesPerSecond: options.cutoverWriteRate,
  });
  let trip: Awaited<ReturnType<typeof readTripRow>> = null;
  let click = 0;
  let returned = 0;
  let steadyRate = 0;
  let sdk: SdkWorkloadSummary;
  try {
    await waitForWrites(workload, options.cutoverWriteRate);
    // The rate the freeze meets: writes acknowledged over the second before the click.
    const before = workload.acknowledged();
    await sleep(1_000);
    steadyRate = workload.acknowledged() - before;
    // 3. the trip: the dialog's preview first (what opening it reads), then the confirmation
    await previewBreaker({ planId, scope: { kind: "all" } });
    click = Date.now();
    const { tripId } = await tripBreaker(benchActor, {
      planId,
      scope: { kind: "all" },
      reason: `bench: breaker trip of ${size} tenants`,
    });
    returned = Date.now() - click;
    trip = await pollUntil(
      `the breaker's rollback of ${size} tenants to end`,
      async () => {
        const row = await readTripRow(tripId);
        return row && ["rolled_back", "failed"].includes(row.status) ? row : null;
      },
      { timeoutMs: TRIP_TIMEOUT_MS, intervalMs: 50 },
    );
    await sleep(WRITE_AROUND_MS);
  } finally {
    // 4. ledger, map, re-arm
    sdk = await workload.stop();
  }
  const leftOnShards = await db().tenantRoute.count({ where: { planId, ownerDatabaseId: { not: null } } });
  if (!trip) throw new Error("the trip did not end");
  log(
    `    SDK workload: ${steadyRate} writes in the second before the click; ${sdk.acknowledged} writes in all; ${sdk.metFreeze.count} met the freeze: p50 ${sdk.metFreeze.p50.toFixed(0)} ms, p99 ${sdk.metFreeze.p99.toFixed(0)} ms, max ${sdk.metFreeze.max.toFixed(0)} ms; ` +
      `retries ${JSON.stringify(sdk.retries)}; ledger sample: ${sdk.ledgerProblems.length} of ${sdk.ledgerChecked} wrong`,
  );
  await rearmBreaker(benchActor, { planId, reason: `bench: re-armed after the ${size}-tenant round` });
  if (leftOnShards > 0) {
    // The next round starts from legacy: a failed trip left its tenants on their shards.
    await releaseTenantsForCancel(planId, log);
  }
  const at = (d: Date | null) => (d ? d.getTime() - click : null);
  return {
    tenants: size,
    status: trip.status,
    error: trip.error,
    rolledBack: Object.values(trip.outcomes).filter((o) => o.outcome === "rolled_back").length,
    clickToFlipMs: at(trip.flippedAt),
    clickToEndMs: at(trip.endedAt),
    freezeMs:
      trip.freezeStartedAt && trip.freezeEndedAt
        ? trip.freezeEndedAt.getTime() - trip.freezeStartedAt.getTime()
        : null,
    profile: [
      { step: "created", atMs: trip.createdAt.getTime() - click },
      { step: "(service returned)", atMs: returned },
      ...trip.steps.map((s) => ({ step: s.status, atMs: new Date(s.at).getTime() - click })),
    ],
    sdk,
    steadyRate,
    leftOnShards,
  };
}

async function readTripRow(id: string) {
  const row = await db().breakerTrip.findUnique({ where: { id } });
  if (!row) return null;
  return {
    status: row.status,
    error: row.error,
    createdAt: row.createdAt,
    flippedAt: row.flippedAt,
    endedAt: row.endedAt,
    freezeStartedAt: row.freezeStartedAt,
    freezeEndedAt: row.freezeEndedAt,
    outcomes: (row.outcomes ?? {}) as Record<string, { outcome: string }>,
    steps: (Array.isArray(row.steps) ? row.steps : []) as { status: string; at: string }[],
  };
}

export function describeRound(r: BreakerRound): string {
  const ms = (v: number | null) => (v === null ? "—" : `${v} ms`);
  return (
    `${r.tenants} tenants: ${r.status}${r.error ? ` (${r.error})` : ""}, ${r.rolledBack} rolled back; ` +
    `click → flip ${ms(r.clickToFlipMs)}, → rolled back ${ms(r.clickToEndMs)}, freeze ${ms(r.freezeMs)}`
  );
}

export function addBreakerFigures(
  report: BenchReport,
  options: BenchOptions,
  result: BreakerStepResult,
): void {
  for (const r of result.rounds) {
    const what = `${r.tenants} tenants under ${options.cutoverWriteRate} SDK writes/s asked (${r.steadyRate} in the second before the trip)`;
    report.add({
      figure: figure(`breaker.${r.tenants}.click_to_flip_ms`, r.clickToFlipMs ?? Number.NaN, "ms"),
      label: `breaker trip → last tenant's owner legacy on the map (the flip), ${what} (${r.status})`,
      aim: {
        text: `≤ ${BREAKER_FLIP_AIM_MS} ms`,
        check: (f) => r.status === "rolled_back" && f.value <= BREAKER_FLIP_AIM_MS,
      },
    });
    report.add({
      figure: figure(`breaker.${r.tenants}.click_to_rolled_back_ms`, r.clickToEndMs ?? Number.NaN, "ms"),
      label: `breaker trip → rollback ended (unfrozen, fences lifted), ${what}`,
    });
    report.add({
      figure: figure(`breaker.${r.tenants}.freeze_ms`, r.freezeMs ?? Number.NaN, "ms"),
      label: `breaker freeze window (freeze_started_at → freeze_ended_at), ${what}`,
    });
    report.add({
      figure: figure(`breaker.${r.tenants}.sdk.freeze_wait.p99_ms`, r.sdk.metFreeze.p99, "ms"),
      label: `SDK writes that waited on the breaker's freeze, p99 (p50 ${r.sdk.metFreeze.p50.toFixed(0)} ms, ${r.sdk.metFreeze.count} writes), ${what}`,
    });
    if (r.status !== "rolled_back") report.note(`Breaker, ${r.tenants} tenants: ${r.status}: ${r.error}`);
    if (r.leftOnShards)
      report.note(`Breaker, ${r.tenants} tenants: ${r.leftOnShards} still on a shard after the trip.`);
    if (r.sdk.ledgerProblems.length) {
      report.note(
        `Breaker, ${r.tenants} tenants: ${r.sdk.ledgerProblems.length} of ${r.sdk.ledgerChecked} sampled acknowledged writes were not on legacy after the rollback; the first: ${r.sdk.ledgerProblems[0]}`,
      );
    }
    if (r.sdk.unexpected.length) {
      report.note(
        `Breaker, ${r.tenants} tenants: the SDK workload saw ${r.sdk.unexpected.length} unexpected errors; the first: ${r.sdk.unexpected[0]}`,
      );
    }
  }
  const checked = result.rounds.reduce((n, r) => n + r.sdk.ledgerChecked, 0);
  const wrong = result.rounds.reduce((n, r) => n + r.sdk.ledgerProblems.length, 0);
  report.add({
    figure: figure("breaker.ledger.wrong", wrong, "writes", checked),
    label: "breaker rounds: sampled acknowledged writes not found on their owner afterwards",
    baselineLabel: "sampled",
    aim: { text: "0", check: (f) => f.value === 0 },
  });
  if (result.rowProblems.length) {
    report.note(`Row counts legacy vs shards after the breaker rounds: ${result.rowProblems.join("; ")}`);
  }
}
