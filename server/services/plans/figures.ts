// The one source of every live figure a person reads about a plan: backfill progress, copy rates,
// ETAs, forward CDC lag, parity, breaker and tenants on shards. The plan header, the backfill page's
// cards and the fleet list all show what this returns (the same query in the browser), so two
// places can no longer disagree (the header once said 213 ms while a card said 2 ms: each picked
// its own "latest" sample from its own window at its own moment).
//
// A figure is shown only while it is true: a copy rate exists only for a table that is copying now
// (not done, not paused, a sample in the last FRESH_MS), a lag only for a stream that runs, measured
// since the current movement started; older measurements come with their time so the page can say
// how old they are.

import { db } from "../../db";
// The metric the reverse streams record per plan (max over shards), like forward's cdc.lag_ms.
import { REVERSE_LAG_METRIC } from "../../engine/cutover/precheck";
import { isStreamingStatus, RETAINED_WAL_METRIC } from "../../engine/runtime/slot-watch";
import { type BreakerStatus, planBreakerState } from "../../engine/state/breaker";
import type { MovementStatus } from "../../engine/state/movement";
import { AppError } from "../../errors";
import { DEFAULT_PLAN_SETTINGS, ZPlanSettings } from "../../schemas/plan";
import { parityGate } from "../parity/parity";
import { combinedRateSeries, type Eta, estimateEta, type RatePoint, smoothRate } from "./eta";

/** A rate or lag sample older than this no longer describes "now". */
export const FRESH_MS = 10_000;
/** How far back the copy rate is smoothed over. */
const RATE_LOOKBACK_MS = 120_000;
const RATE_PREFIX = "backfill.rows_per_s:";

export type LagFigure =
  | { state: "not_streaming" }
  | { state: "stopped"; error: string | null }
  | { state: "waiting" }
  | { state: "measured"; ms: number; at: Date; fresh: boolean };

/**
 * Reverse replication lag (shard → legacy, what keeps legacy current for a rollback): it exists
 * only while some tenant is owned by a shard, so with none it says so rather than "0 ms".
 */
export type ReverseLagFigure =
  | { state: "none_on_shards" }
  | { state: "waiting" }
  | { state: "measured"; ms: number; at: Date; fresh: boolean };

export interface TableFigures {
  table: string;
  kind: string;
  status: string;
  rowsCopied: number;
  rowsTotal: number;
  chunks: number;
  /** null unless the table is copying right now */
  rowsPerSecond: number | null;
  eta: Eta | null;
}

export interface PlanFigures {
  planId: string;
  movementStatus: MovementStatus | null;
  backfill: {
    rowsCopied: number;
    rowsTotal: number;
    tables: number;
    tablesDone: number;
    /** rows copied / rows expected; null before a movement started */
    fraction: number | null;
    done: boolean;
    /** the plan's smoothed rate (all tables as one series); null unless something copies right now */
    rowsPerSecond: number | null;
    eta: Eta | null;
    tasks: TableFigures[];
  };
  /** Where the plan's work stands, in one line: the backfill, then (once cutovers exist) tenants. */
  progress: {
    stage: "not_started" | "backfill" | "cutover" | "cancelled";
    fraction: number | null;
    eta: Eta | null;
  };
  lag: LagFigure;
  reverseLag: ReverseLagFigure;
  /**
   * Writes the in-database fences refused (counted by the engine): `notOwner` went to a database
   * that does not own the tenant (an application writing around the router, or a stale map).
   */
  strayWrites: { total: number; notOwner: number };
  parity: {
    state: "clean" | "drift" | "unverified" | "unchecked";
    openMismatches: number;
    lastFullCheckAt: Date | null;
  };
  /**
   * WAL the movement's replication slot holds on legacy (newest sample of this movement), and
   * whether a stream reads it: a slot nobody streams grows until legacy's disk fills. `warn` once
   * it holds more than the plan's threshold while nothing streams it. null without a sample.
   */
  slot: { retainedBytes: number; at: Date; streaming: boolean; warnBytes: number; warn: boolean } | null;
  /** The plan's breaker: armed, or its newest trip's status with who, when and why (docs/breaker.md). */
  breaker: {
    state: BreakerStatus;
    trippedAt: Date | null;
    trippedBy: string | null;
    reason: string | null;
    error: string | null;
  };
  /** Tenants whose owner is a shard (the routing map's routes) of the tenants the census counted. */
  tenants: { onShards: number; total: number | null };
  at: Date;
}

/** Figures of several plans at once (the fleet list), in a fixed number of queries plus parity's. */
export async function planFigures(planIds: string[], now = new Date()): Promise<Map<string, PlanFigures>> {
  const result = new Map<string, PlanFigures>();
  if (planIds.length === 0) return result;
  const [movements, tasks, lags, rateSamples, census, retained, plans, reverseLags, onShards, stray, trips] =
    await Promise.all([
      db().dataMovement.findMany({
        where: { planId: { in: planIds } },
        select: { planId: true, status: true, startedAt: true, lastError: true },
      }),
      db().backfillTask.findMany({ where: { planId: { in: planIds } }, orderBy: { id: "asc" } }),
      // The newest lag sample per plan (one index probe each).
      db().$queryRaw<{ plan_id: string; value: number; at: Date }[]>`
      select p.id::text as plan_id, s.value, s.at
      from unnest(${planIds}::uuid[]) as p(id)
      cross join lateral (
        select value, at from metric_sample
        where plan_id = p.id and name = 'cdc.lag_ms'
        order by at desc limit 1
      ) s`,
      db().metricSample.findMany({
        where: {
          planId: { in: planIds },
          name: { startsWith: RATE_PREFIX },
          at: { gte: new Date(now.getTime() - RATE_LOOKBACK_MS) },
        },
        orderBy: { at: "asc" },
        select: { planId: true, name: true, value: true, at: true },
      }),
      db().$queryRaw<{ plan_id: string; tenants: bigint }[]>`
      select plan_id::text, count(distinct tenant_key) as tenants
      from tenant_census where plan_id = any(${planIds}::uuid[]) group by plan_id`,
      db().$queryRaw<{ plan_id: string; value: number; at: Date }[]>`
      select p.id::text as plan_id, s.value, s.at
      from unnest(${planIds}::uuid[]) as p(id)
      cross join lateral (
        select value, at from metric_sample
        where plan_id = p.id and name = ${RETAINED_WAL_METRIC}
        order by at desc limit 1
      ) s`,
      db().plan.findMany({ where: { id: { in: planIds } }, select: { id: true, settings: true } }),
      db().$queryRaw<{ plan_id: string; value: number; at: Date }[]>`
      select p.id::text as plan_id, s.value, s.at
      from unnest(${planIds}::uuid[]) as p(id)
      cross join lateral (
        select value, at from metric_sample
        where plan_id = p.id and name = ${REVERSE_LAG_METRIC}
        order by at desc limit 1
      ) s`,
      db().tenantRoute.groupBy({
        by: ["planId"],
        where: { planId: { in: planIds }, ownerDatabaseId: { not: null } },
        _count: { _all: true },
      }),
      db().$queryRaw<{ plan_id: string; total: bigint; not_owner: bigint }[]>`
      select plan_id::text, coalesce(sum(count), 0) as total,
             coalesce(sum(count) filter (where reason = 'not_owner'), 0) as not_owner
      from stray_write where plan_id = any(${planIds}::uuid[]) group by plan_id`,
      // The newest trip per plan (one index probe each).
      db().$queryRaw<
        {
          plan_id: string;
          status: string;
          created_at: Date;
          by: string;
          reason: string;
          error: string | null;
        }[]
      >`
      select p.id::text as plan_id, t.status, t.created_at, t.requested_by_email as by, t.reason, t.error
      from unnest(${planIds}::uuid[]) as p(id)
      cross join lateral (
        select status, created_at, requested_by_email, reason, error from breaker_trip
        where plan_id = p.id order by created_at desc limit 1
      ) t`,
    ]);
  const parity = await Promise.all(planIds.map((id) => parityGate(id)));

  for (const [i, planId] of planIds.entries()) {
    const movement = movements.find((m) => m.planId === planId) ?? null;
    const status = (movement?.status ?? null) as MovementStatus | null;
    const since = movement?.startedAt.getTime() ?? Number.POSITIVE_INFINITY;
    const samplesByTable = new Map<string, RatePoint[]>();
    for (const s of rateSamples) {
      if (s.planId !== planId || s.at.getTime() < since) continue;
      const table = s.name.slice(RATE_PREFIX.length);
      const points = samplesByTable.get(table) ?? [];
      points.push({ t: s.at.getTime(), value: s.value });
      samplesByTable.set(table, points);
    }
    const tableFigures = tasks
      .filter((t) => t.planId === planId)
      .map((t): TableFigures => {
        const rowsCopied = Number(t.rowsCopied);
        // The estimate from the catalog can be low; a done table's total is what was copied.
        const rowsTotal = t.status === "done" ? rowsCopied : Math.max(Number(t.rowsTotal), rowsCopied);
        const points = samplesByTable.get(t.tableName) ?? [];
        const latest = points.at(-1);
        const copying =
          status === "running" &&
          t.status === "running" &&
          latest !== undefined &&
          now.getTime() - latest.t <= FRESH_MS;
        const rate = copying ? smoothRate(points) : null;
        return {
          table: t.tableName,
          kind: t.kind,
          status: t.status,
          rowsCopied,
          rowsTotal,
          chunks: t.chunks,
          rowsPerSecond: rate ? rate.rowsPerSecond : null,
          eta: rate ? estimateEta({ remaining: rowsTotal - rowsCopied, done: rowsCopied, rate }) : null,
        };
      });
    const rowsCopied = tableFigures.reduce((n, t) => n + t.rowsCopied, 0);
    const rowsTotal = tableFigures.reduce((n, t) => n + t.rowsTotal, 0);
    const tablesDone = tableFigures.filter((t) => t.status === "done").length;
    const done = tableFigures.length > 0 && tablesDone === tableFigures.length;
    // The plan's rate: all of this movement's copy samples as one series, while anything copies.
    const newest = Math.max(0, ...[...samplesByTable.values()].map((p) => p.at(-1)?.t ?? 0));
    const overall =
      status === "running" && !done && now.getTime() - newest <= FRESH_MS
        ? smoothRate(combinedRateSeries(samplesByTable.values()))
        : null;
    const eta =
      overall && !done
        ? estimateEta({ remaining: rowsTotal - rowsCopied, done: rowsCopied, rate: overall })
        : null;
    const fraction = tableFigures.length ? (rowsTotal > 0 ? rowsCopied / rowsTotal : done ? 1 : 0) : null;

    const lagSample = lags.find((l) => l.plan_id === planId);
    let lag: LagFigure;
    if (status === "failed") lag = { state: "stopped", error: movement?.lastError ?? null };
    else if (status !== "running" && status !== "paused") lag = { state: "not_streaming" };
    else if (!lagSample || lagSample.at.getTime() < since) lag = { state: "waiting" };
    else
      lag = {
        state: "measured",
        ms: lagSample.value,
        at: lagSample.at,
        fresh: now.getTime() - lagSample.at.getTime() <= FRESH_MS,
      };

    const tenantsOnShards = onShards.find((o) => o.planId === planId)?._count._all ?? 0;
    const reverseSample = reverseLags.find((l) => l.plan_id === planId);
    let reverseLag: ReverseLagFigure;
    if (tenantsOnShards === 0) reverseLag = { state: "none_on_shards" };
    // A sample from before the current movement describes streams that no longer exist.
    else if (!reverseSample || reverseSample.at.getTime() < since) reverseLag = { state: "waiting" };
    else
      reverseLag = {
        state: "measured",
        ms: reverseSample.value,
        at: reverseSample.at,
        fresh: now.getTime() - reverseSample.at.getTime() <= FRESH_MS,
      };
    const strayRow = stray.find((s) => s.plan_id === planId);

    const retainedSample = retained.find((r) => r.plan_id === planId);
    let slot: PlanFigures["slot"] = null;
    if (status && status !== "cancelled" && retainedSample && retainedSample.at.getTime() >= since) {
      const settings = ZPlanSettings.safeParse(plans.find((p) => p.id === planId)?.settings);
      const warnBytes =
        (settings.success ? settings.data : DEFAULT_PLAN_SETTINGS).slotRetainedWarnMb * 1024 * 1024;
      const streaming = isStreamingStatus(status);
      slot = {
        retainedBytes: retainedSample.value,
        at: retainedSample.at,
        streaming,
        warnBytes,
        warn: !streaming && retainedSample.value > warnBytes,
      };
    }

    const tenantsTotal = census.find((c) => c.plan_id === planId)?.tenants;
    const gate = parity[i] ?? { state: "unchecked" as const, openMismatches: 0, lastFullCheckAt: null };
    result.set(planId, {
      planId,
      movementStatus: status,
      backfill: {
        rowsCopied,
        rowsTotal,
        tables: tableFigures.length,
        tablesDone,
        fraction,
        done,
        rowsPerSecond: overall ? overall.rowsPerSecond : null,
        eta,
        tasks: tableFigures,
      },
      progress:
        !status || (status === "cancelled" && !done)
          ? { stage: status === "cancelled" ? "cancelled" : "not_started", fraction: null, eta: null }
          : done
            ? { stage: "cutover", fraction: 0, eta: null }
            : { stage: "backfill", fraction, eta },
      lag,
      reverseLag,
      strayWrites: { total: Number(strayRow?.total ?? 0), notOwner: Number(strayRow?.not_owner ?? 0) },
      parity: gate,
      slot,
      breaker: breakerFigure(trips.find((t) => t.plan_id === planId) ?? null),
      tenants: { onShards: tenantsOnShards, total: tenantsTotal === undefined ? null : Number(tenantsTotal) },
      at: now,
    });
  }
  return result;
}

function breakerFigure(
  trip: { status: string; created_at: Date; by: string; reason: string; error: string | null } | null,
): PlanFigures["breaker"] {
  const state = planBreakerState(trip);
  if (!trip || state === "armed")
    return { state, trippedAt: null, trippedBy: null, reason: null, error: null };
  return { state, trippedAt: trip.created_at, trippedBy: trip.by, reason: trip.reason, error: trip.error };
}

/** One plan's figures (the header and the cards of its pages). */
export async function getPlanFigures(planId: string, now = new Date()): Promise<PlanFigures> {
  const plan = await db().plan.findUnique({ where: { id: planId }, select: { id: true } });
  if (!plan) throw new AppError("NOT_FOUND", "No such plan: it may have been removed, or the link is wrong.");
  const figures = (await planFigures([planId], now)).get(planId);
  if (!figures) throw new Error(`no figures for plan ${planId}`);
  return figures;
}
