// Step 5d (cutover.ts does the measuring) and 7b (its native baseline), and their figures.
// 5d runs on movement 1 once its CDC measurements are done and before it is cancelled: forward
// replication is streaming, which a cutover to a shard needs, and the tenants it leaves on the
// shards give the reverse streams their traffic.
import pg from "pg";
import { db } from "@/server/db";
import { ensureReverseSlot } from "@/server/engine/cutover/cdc-links";
import { advanceSequences, shardedSequences } from "@/server/engine/cutover/sequences";
import { hashPlacement } from "@/server/engine/router/placement";
import { loadMovementContext } from "@/server/engine/store/movement-context";
import { changeTenantRoutes, installFences } from "@/server/services/routing/routing";
import type { CleanupStack } from "./cleanup";
import { type BenchCluster, LEGACY_DB, SHARD_DB } from "./cluster";
import {
  type CutoverBatch,
  describeBatch,
  describeBreakdown,
  describeSlowest,
  measureReverseLag,
  planDatabaseUrls,
  type ReverseLagMeasurement,
  runCutoverBatch,
  type SdkWorkloadSummary,
  startCutoverWorkload,
  waitForCutoverReady,
  waitForReverseStreams,
} from "./cutover";
import { benchActor } from "./movement";
import { startNativeReverseReplication } from "./native-reverse";
import type { BenchOptions } from "./options";
import { ARRIVAL_SETUP_SQL } from "./probe";
import { type BenchReport, figure } from "./report";
import { pollUntil } from "./stats";

const PROBE_POOL_SIZE = 8;
/** The aims issue 12 sets. */
const FREEZE_P99_AIM_MS = 250;
const REVERSE_P99_AIM_RATIO = 2;

export interface CutoverStepResult {
  /** Null with --cutover-by-map: the tenants went to their shards by a map change, not cutovers. */
  forward: CutoverBatch | null;
  back: CutoverBatch | null;
  sdk: SdkWorkloadSummary | null;
  /** Null when no tenant ended on a shard (every cutover aborted): nothing to carry back. */
  reverse: ReverseLagMeasurement | null;
  /** The tenants each shard owns at the end, in the shards' order: the native baseline writes the same. */
  shardTenants: string[][];
}

function pool(url: string, max: number): pg.Pool {
  const p = new pg.Pool({ connectionString: url, max, application_name: "shardshift-bench" });
  p.on("error", () => {});
  return p;
}

/**
 * How long a batch may take before the bench withdraws what no worker claimed yet: generous for a
 * healthy engine (8 at a time, well under a second each), and a bound on the step when it is not.
 */
function batchDeadlineMs(tenants: number): number {
  return 30_000 + tenants * 300;
}

/** `count` tenants spread over the whole list (not the first ones: ids sort as text here). */
export function spread(tenantIds: readonly string[], count: number): string[] {
  const every = tenantIds.length / count;
  return Array.from({ length: count }, (_, i) => tenantIds[Math.floor(i * every)] as string);
}
interface StepContext {
  planId: string;
  cluster: BenchCluster;
  legacyPool: pg.Pool;
  tenantIds: readonly string[];
  options: BenchOptions;
  log: (line: string) => void;
  report: BenchReport;
  /** Settle, wait out autovacuum, checkpoint: runs last before the reverse lag test's writes. */
  prepareMeasurement: () => Promise<void>;
  /** Logs the worker's CDC stage trace (commit → read → applied) over the reverse test's writes. */
  logStages?: (what: string, window: { from: Date; to: Date }) => void;
}

export async function runCutoverStep(ctx: StepContext): Promise<CutoverStepResult> {
  const { planId, cluster } = ctx;
  // A request needs the tenant in the census (or a route): the census runs once the backfill is done.
  await pollUntil(
    "the tenant census (a cutover request needs the tenant known to the plan)",
    async () => (await db().dataMovement.findUnique({ where: { planId } }))?.censusAt,
    { timeoutMs: 120_000, intervalMs: 250 },
  );
  const shardUrls = cluster.shards.map((s) => s.url(SHARD_DB));
  const { names, shardIds } = await planDatabaseUrls(planId, {
    legacy: cluster.legacy.url(LEGACY_DB),
    shards: shardUrls,
  });
  const shardPools = shardUrls.map((url) => pool(url, PROBE_POOL_SIZE));
  try {
    const moved = ctx.options.cutoverByMap
      ? { forward: null, back: null, sdk: null, owners: await placeByMap(ctx, shardIds) }
      : await cutOverUnderWorkload(ctx, names, shardIds, shardPools);
    // The tenants each shard owns now: the reverse lag test writes probes for them.
    const backDone = new Set(moved.back?.owners.keys() ?? []);
    const owners: Map<string, string | null> =
      moved.forward?.owners ?? ("owners" in moved ? moved.owners : new Map());
    const shardTenants = shardIds.map((id) =>
      [...owners].filter(([t, owner]) => owner === id && !backDone.has(t)).map(([t]) => t),
    );
    const result = { forward: moved.forward, back: moved.back, sdk: moved.sdk };
    if (shardTenants.every((t) => t.length === 0)) {
      ctx.log("    no tenant ended on a shard: no reverse lag test");
      ctx.report.note("No tenant ended on a shard, so the reverse lag was not measured.");
      return { ...result, reverse: null, shardTenants };
    }
    const reverse = await measureOurReverseLag(ctx, shardPools, shardTenants);
    ctx.logStages?.("ours, shard → legacy", reverse.window);
    return { ...result, reverse, shardTenants };
  } finally {
    await releaseTenantsForCancel(planId, ctx.log);
    await Promise.all(shardPools.map((p) => p.end().catch(() => {})));
  }
}

/**
 * --cutover-by-map: the tenants go to their placement's shards by one map change (audited as the
 * bench's), with no SDK workload and no cutovers — only the reverse streams are measured.
 */
async function placeByMap(ctx: StepContext, shardIds: readonly string[]): Promise<Map<string, string>> {
  const tenants = spread(ctx.tenantIds, ctx.options.cutoverTenants);
  const owners = await placeOnShardsByMap(
    ctx.planId,
    tenants,
    shardIds,
    "bench: tenants put on their shards by the map, for the reverse lag test (--cutover-by-map)",
  );
  ctx.log(`    ${owners.size} tenant(s) put on their shards by a map change (no cutovers: --cutover-by-map)`);
  return owners;
}

/**
 * Tenants to their placement's shards by one map change (audited as the bench's), without N
 * cutovers: the state a cutover leaves, quickly. Not a product path: the fences are installed and
 * each owning shard's reverse slot exists before the map changes (as a cutover's precheck has it),
 * so no write on a shard precedes its slot. The caller makes sure forward replication has caught up
 * (a write still on its way to the shard would land after the shard's own writes).
 */
export async function placeOnShardsByMap(
  planId: string,
  tenants: readonly string[],
  shardIds: readonly string[],
  reason: string,
): Promise<Map<string, string>> {
  const placement = hashPlacement(shardIds.length);
  const owners = new Map(tenants.map((t) => [t, shardIds[placement.shardFor(t)] as string]));
  await installFences(benchActor, { planId, reason });
  const movement = await loadMovementContext(planId);
  for (const ordinal of new Set(tenants.map((t) => placement.shardFor(t)))) {
    const shard = movement.shards[ordinal];
    if (!shard) throw new Error(`The plan has no shard ${ordinal}.`);
    await ensureReverseSlot(shard, { planId, shardOrdinal: ordinal, schema: movement.schema });
  }
  // A cutover carries the tenant's sequences to its new owner (docs/cutover.md step 6); this
  // placement stands for N cutovers, so it does too. Without it a shard handed out an id legacy had
  // already given one of these tenants (events_pkey, in the breaker step's second round).
  const sequences = await shardedSequences(movement.source, movement.schema.tables);
  for (const ordinal of new Set(tenants.map((t) => placement.shardFor(t)))) {
    await advanceSequences(movement.source, movement.shards[ordinal] as pg.Pool, sequences);
  }
  await changeTenantRoutes(benchActor, {
    planId,
    changes: [...owners].map(([tenantKey, owner]) => ({ tenantKey, owner, frozen: false })),
    reason,
  });
  return owners;
}

/** Tenants to their shards, then some back, all under the SDK workload; its summary once stopped. */
async function cutOverUnderWorkload(
  ctx: StepContext,
  names: Record<string, string>,
  shardIds: readonly string[],
  shardPools: readonly pg.Pool[],
): Promise<{ forward: CutoverBatch; back: CutoverBatch | null; sdk: SdkWorkloadSummary }> {
  const { planId, options, log } = ctx;
  const moved = spread(ctx.tenantIds, options.cutoverTenants);
  const movedSet = new Set(moved);
  // Half the writes to tenants being moved (so freezes meet writes), half to tenants that stay.
  const staying = ctx.tenantIds.filter((t) => !movedSet.has(t)).slice(0, moved.length);
  await waitForCutoverReady(
    planId,
    moved[0] as string,
    "forward replication to report a lag that allows a cutover",
  );
  const workload = await startCutoverWorkload({
    planId,
    databases: names,
    tenants: [...moved, ...staying],
    writesPerSecond: options.cutoverWriteRate,
  });
  let forward: CutoverBatch | null = null;
  let back: CutoverBatch | null = null;
  let sdk: SdkWorkloadSummary;
  try {
    await pollUntil(
      "the SDK workload's first half second of writes",
      async () => workload.acknowledged() >= options.cutoverWriteRate / 2,
      { timeoutMs: 30_000 },
    );
    forward = await runCutoverBatch(planId, moved, "to-shard", log, batchDeadlineMs(moved.length));
    log(`    ${describeBatch(forward)}`);
    log(`    to-shard steps p50/p99 ms (done attempts): ${describeBreakdown(forward)}`);
    for (const line of describeSlowest(forward)) log(`      slowest: ${line}`);
    const owners = forward.owners;
    const backTenants = [...owners.keys()].slice(0, options.cutoverBack);
    if (backTenants.length > 0) {
      // The way back is fed by the reverse streams: they start once a shard owns a tenant.
      const owning = new Set(backTenants.map((t) => owners.get(t)));
      await waitForReverseStreams(
        planId,
        shardIds.flatMap((id, ordinal) =>
          owning.has(id) ? [{ pool: shardPools[ordinal] as pg.Pool, ordinal }] : [],
        ),
      );
      await waitForCutoverReady(
        planId,
        backTenants[0] as string,
        "reverse replication to report a lag that allows a cutover back",
      );
      back = await runCutoverBatch(
        planId,
        backTenants,
        "to-legacy",
        log,
        batchDeadlineMs(backTenants.length),
      );
      log(`    ${describeBatch(back)}`);
      log(`    to-legacy steps p50/p99 ms (done attempts): ${describeBreakdown(back)}`);
    }
  } finally {
    sdk = await workload.stop();
  }
  log(
    `    SDK workload: ${sdk.acknowledged} writes acknowledged at ${sdk.writesPerSecond.toFixed(0)}/s; calls p50 ${sdk.calls.p50.toFixed(1)} ms, p99 ${sdk.calls.p99.toFixed(1)} ms; ` +
      `${sdk.metFreeze.count} met a freeze: p50 ${sdk.metFreeze.p50.toFixed(0)} ms, p99 ${sdk.metFreeze.p99.toFixed(0)} ms, max ${sdk.metFreeze.max.toFixed(0)} ms; ` +
      `retries ${JSON.stringify(sdk.retries)}; ledger sample: ${sdk.ledgerProblems.length} of ${sdk.ledgerChecked} wrong`,
  );
  noteOutcomes(ctx, [forward, back], sdk);
  return { forward, back, sdk };
}

/** Aborts by reason, unexpected SDK errors and ledger mismatches: logged and kept with the figures. */
function noteOutcomes(
  ctx: StepContext,
  batches: readonly (CutoverBatch | null)[],
  sdk: SdkWorkloadSummary,
): void {
  const { log, report } = ctx;
  for (const batch of batches) {
    if (!batch) continue;
    for (const { reason, count } of batch.reasons) {
      log(`    ${batch.direction} ${count}× ${reason}`);
      report.note(`Cutover ${batch.direction}: ${count} × ${reason}`);
    }
    if (batch.unfinished) {
      report.note(
        `Cutover ${batch.direction}: ${batch.unfinished} attempts had not ended at the deadline (withdrawn unclaimed, or still in flight).`,
      );
    }
  }
  if (sdk.unexpected.length) {
    const line = `The SDK workload saw ${sdk.unexpected.length} unexpected errors; the first: ${sdk.unexpected[0]}`;
    log(`    warning: ${line}`);
    report.note(line);
  }
  if (sdk.ledgerProblems.length) {
    const line = `${sdk.ledgerProblems.length} of ${sdk.ledgerChecked} sampled acknowledged writes were not on their tenant's owner as written; the first: ${sdk.ledgerProblems[0]}`;
    log(`    warning: ${line}`);
    report.note(line);
  }
}

/**
 * Probe writes straight to each shard for tenants it owns (its fence lets them through), arriving
 * on legacy through our reverse streams.
 */
async function measureOurReverseLag(
  ctx: StepContext,
  shardPools: readonly pg.Pool[],
  shardTenants: readonly string[][],
): Promise<ReverseLagMeasurement> {
  const { legacyPool } = ctx;
  try {
    // The forward test's arrival trigger (step 5) would make our source's inserts heavier than native's.
    for (const p of shardPools) {
      await p.query("drop trigger if exists bench_probe_arrival on public.bench_probe");
    }
    await legacyPool.query(ARRIVAL_SETUP_SQL);
    await waitForReverseStreams(
      ctx.planId,
      shardPools.flatMap((p, ordinal) =>
        (shardTenants[ordinal]?.length ?? 0) > 0 ? [{ pool: p, ordinal }] : [],
      ),
    );
    return await measureReverseLag(
      "ours, shard → legacy",
      shardPools.map((p, i) => ({ pool: p, tenantIds: shardTenants[i] ?? [] })),
      legacyPool,
      { rate: ctx.options.cdcRate, seconds: ctx.options.reverseSeconds, poolSize: PROBE_POOL_SIZE },
      ctx.prepareMeasurement,
      ctx.log,
    );
  } finally {
    // Legacy's bench_probe takes no arrivals after this, and bench_arrival must not be part of the
    // next movement's schema (step 6 introspects legacy again).
    await legacyPool
      .query(
        "drop trigger if exists bench_probe_arrival on public.bench_probe; drop table if exists public.bench_arrival",
      )
      .catch(() => {});
  }
}

/** Step 7b: native logical replication shard → legacy, the same reverse test, nothing of ours running. */
export async function runNativeReverseStep(ctx: {
  cluster: BenchCluster;
  shardTenants: string[][];
  options: BenchOptions;
  log: (line: string) => void;
  cleanup: CleanupStack;
  prepareMeasurement: () => Promise<void>;
}): Promise<ReverseLagMeasurement> {
  const replication = await startNativeReverseReplication({
    legacy: ctx.cluster.legacy,
    shards: ctx.cluster.shards,
    password: ctx.cluster.password,
    sourcePoolSize: PROBE_POOL_SIZE,
  });
  let stopping: Promise<void> | null = null;
  const stop = () => {
    stopping ??= replication.stop();
    return stopping;
  };
  ctx.cleanup.push("drop the native reverse subscriptions", stop);
  try {
    return await measureReverseLag(
      "native, shard → legacy",
      replication.sources.map((p, i) => ({ pool: p, tenantIds: ctx.shardTenants[i] ?? [] })),
      replication.target,
      { rate: ctx.options.cdcRate, seconds: ctx.options.reverseSeconds, poolSize: PROBE_POOL_SIZE },
      ctx.prepareMeasurement,
      ctx.log,
    );
  } finally {
    await stop();
  }
}

/** The cutovers' figures (none with --cutover-by-map: no cutover ran). */
function addFreezeFigures(
  report: BenchReport,
  options: BenchOptions,
  forward: CutoverBatch | null,
  back: CutoverBatch | null,
  sdk: SdkWorkloadSummary | null,
): void {
  const freezeAim = {
    text: `p99 ≤ ${FREEZE_P99_AIM_MS} ms`,
    check: (f: { value: number }) => f.value <= FREEZE_P99_AIM_MS,
  };
  for (const [batch, prefix, what] of [
    [forward, "cutover", `${forward?.requested ?? 0} tenants to their shards`],
    [back, "cutover.back", `${back?.requested ?? 0} of them back to legacy`],
  ] as const) {
    if (!batch) continue;
    for (const key of ["p50", "p99", "max"] as const) {
      report.add({
        figure: figure(`${prefix}.freeze.${key}_ms`, batch.freeze[key], "ms"),
        label: `cutover freeze window ${key}, ${what} (freeze_started_at → freeze_ended_at, ${batch.freeze.count} attempts)`,
        aim: key === "p99" ? freezeAim : undefined,
      });
    }
    for (const { step, summary } of batch.breakdown) {
      if (!["freeze", "writesResume", "mapFrozen", "lockWait", "drain", "flip", "unfreeze"].includes(step))
        continue;
      report.add({
        figure: figure(`${prefix}.step.${step}.p99_ms`, summary.p99, "ms"),
        label: `cutover step ${step} p99 (p50 ${summary.p50.toFixed(0)} ms), ${what}, done attempts`,
      });
    }
    report.add({
      figure: figure(`${prefix}.rate.per_s`, batch.donePerSecond, "cutovers/s"),
      label: `cutovers done per second, ${what} (first requested → last ended, ${batch.seconds.toFixed(1)} s; the worker runs 8 at a time)`,
    });
    report.add({
      figure: figure(
        `${prefix}.aborted`,
        batch.aborted + batch.refused + batch.unfinished,
        "attempts",
        batch.requested,
      ),
      label: `cutovers not done, ${what} (aborted ${batch.aborted}, refused ${batch.refused}, unfinished ${batch.unfinished}; reasons in the notes)`,
      baselineLabel: "requested",
    });
  }
  if (!sdk) return;
  report.add({
    figure: figure("cutover.sdk.freeze_wait.p50_ms", sdk.metFreeze.p50, "ms"),
    label: `SDK calls that met a freeze (route frozen at the call or changed during it; ${sdk.metFreeze.count} calls), p50`,
  });
  report.add({
    figure: figure("cutover.sdk.freeze_wait.p99_ms", sdk.metFreeze.p99, "ms"),
    label: "SDK calls that met a freeze, p99",
  });
  report.add({
    figure: figure("cutover.sdk.call.p99_ms", sdk.calls.p99, "ms"),
    label: `SDK calls during the cutovers, all of them, p99 (${sdk.calls.count} calls)`,
  });
  report.add({
    figure: figure("cutover.sdk.writes_per_s", sdk.writesPerSecond, "writes/s", options.cutoverWriteRate),
    label: "SDK write workload during the cutovers: writes acknowledged",
    baselineLabel: "target",
  });
}

export function addCutoverFigures(
  report: BenchReport,
  options: BenchOptions,
  result: CutoverStepResult,
  nativeReverse: ReverseLagMeasurement | null,
): void {
  const { forward, back, sdk, reverse } = result;
  addFreezeFigures(report, options, forward, back, sdk);
  if (!reverse) return;
  const lagRows = ["p50", "p99", "max"] as const;
  for (const key of lagRows) {
    report.add({
      figure: figure(`reverse.lag.${key}_ms`, reverse.lag[key], "ms", nativeReverse?.lag[key] ?? null),
      label: `reverse lag (shard → legacy) ${key} at ${options.cdcRate} writes/s, tenants cut over (ours)`,
      baselineLabel: nativeReverse ? "native shard → legacy" : undefined,
      aim:
        key === "p99" && nativeReverse
          ? {
              text: `ratio ≤ ${REVERSE_P99_AIM_RATIO}`,
              check: (f) => (f.ratio ?? Number.POSITIVE_INFINITY) <= REVERSE_P99_AIM_RATIO,
            }
          : undefined,
    });
  }
  if (nativeReverse) {
    for (const key of lagRows) {
      report.add({
        figure: figure(`reverse.native.lag.${key}_ms`, nativeReverse.lag[key], "ms"),
        label: `reverse lag ${key} at ${options.cdcRate} writes/s (native shard → legacy)`,
      });
    }
  }
  report.add({
    figure: figure("reverse.lag.write_rate", reverse.paced.writesPerSecond, "writes/s", options.cdcRate),
    label: "reverse lag test: writes achieved on the shards (ours)",
    baselineLabel: "target",
  });
  if (nativeReverse) {
    report.add({
      figure: figure(
        "reverse.native.lag.write_rate",
        nativeReverse.paced.writesPerSecond,
        "writes/s",
        options.cdcRate,
      ),
      label: "reverse lag test: writes achieved on the shards (native)",
      baselineLabel: "target",
    });
  }
}

/**
 * Step 6 cancels movement 1, and a cancel is refused while a shard owns a tenant (its writes would be
 * stranded there). The bench throws the shards away next, so it hands the tenants back to legacy with
 * a plain map change (audited as the bench's) instead of cutting each one back: not a product path —
 * a user cuts tenants back, or trips the breaker.
 */
export async function releaseTenantsForCancel(planId: string, log: (m: string) => void): Promise<void> {
  await pollUntil(
    "the bench's cutover attempts to end",
    async () =>
      (await db().tenantCutover.count({
        where: { planId, status: { notIn: ["done", "aborted"] } },
      })) === 0,
    { timeoutMs: 180_000, intervalMs: 250 },
  ).catch((error) => log(`    warning: ${(error as Error).message}`));
  const routes = await db().tenantRoute.findMany({
    where: { planId, OR: [{ ownerDatabaseId: { not: null } }, { frozen: true }] },
    select: { tenantKey: true },
  });
  for (let i = 0; i < routes.length; i += 200) {
    await changeTenantRoutes(benchActor, {
      planId,
      changes: routes
        .slice(i, i + 200)
        .map((r) => ({ tenantKey: r.tenantKey, owner: "legacy", frozen: false })),
      reason:
        "bench: tenants handed back to legacy before the movement is cancelled (the shards are thrown away)",
    });
  }
  if (routes.length)
    log(`    ${routes.length} tenant(s) handed back to legacy on the map before step 6's cancel`);
}
