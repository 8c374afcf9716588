// Reads the measured facts the gates and trip rules judge from the engine's store: lag samples both
// ways, parity runs and open mismatches, stray writes, shard probes, the SDK's reported counts, the
// breaker's recorded trips, and the routing map's owners. A handful of indexed reads per plan, so
// the engine can evaluate them every few seconds.
//
// Conventions this reader defines for series other rounds will write (absent today, they make the
// rules that read them inconclusive, never passing):
//   cdc.reverse_lag_ms          reverse CDC's lag, like cdc.lag_ms, about once a second
//   sdk.requests.<ordinal>      queries the router SDK sent to shard <ordinal> since its last report
//   sdk.errors.<ordinal>        of which failed
//   engine_event source=breaker, level=error: one per trip
import type { TPlanSettings } from "../../schemas/plan";
import { LAG_FRESH_MS } from "../state/plan-facts";
import { db } from "../store/db";
import type { CohortFacts, MeasuredFacts } from "./facts";
import type { Sample } from "./judgement";
import { reachabilityMetric } from "./shard-probe";

export const FORWARD_LAG_METRIC = "cdc.lag_ms";
export const REVERSE_LAG_METRIC = "cdc.reverse_lag_ms";
export const sdkRequestsMetric = (ordinal: number) => `sdk.requests.${ordinal}`;
export const sdkErrorsMetric = (ordinal: number) => `sdk.errors.${ordinal}`;
export const BREAKER_EVENT_SOURCE = "breaker";
/** A refusal this close to a tenant's cutover attempt is the cutover's (see the stray-write read below). */
const STRAY_GRACE_BEFORE_MS = 2_000;
const STRAY_GRACE_AFTER_MS = 30_000;

type WindowSettings = Pick<TPlanSettings, "gateWindowMinutes" | "breakerWindowSeconds">;

/** How far back the facts reach: the longest window, plus one sample gap before it. */
export function factsReachMs(settings: WindowSettings): number {
  return Math.max(settings.gateWindowMinutes * 60_000, settings.breakerWindowSeconds * 1000) + LAG_FRESH_MS;
}

export async function loadMeasuredFacts(
  planId: string,
  settings: WindowSettings,
  now = new Date(),
): Promise<MeasuredFacts> {
  const since = new Date(now.getTime() - factsReachMs(settings));
  const tripSince = new Date(now.getTime() - settings.breakerWindowSeconds * 1000);
  const shards = await db().planShard.findMany({
    where: { planId },
    orderBy: { ordinal: "asc" },
    include: { database: { select: { name: true } } },
  });
  const probeNames = shards.map((s) => reachabilityMetric(s.ordinal));
  const [lag, movement, routes, lastFull, lastCheck, open, map, strays, probes, answered, sdk, trips] =
    await Promise.all([
      db().metricSample.findMany({
        where: {
          planId,
          name: { in: [FORWARD_LAG_METRIC, REVERSE_LAG_METRIC] },
          at: { gte: since, lte: now },
        },
        orderBy: { at: "asc" },
        select: { name: true, value: true, at: true },
      }),
      db().dataMovement.findUnique({ where: { planId }, select: { status: true } }),
      db().tenantRoute.findMany({
        where: { planId, ownerDatabaseId: { not: null } },
        select: { tenantKey: true },
      }),
      db().parityRun.findFirst({
        where: { planId, kind: "full", status: "complete" },
        orderBy: { finishedAt: "desc" },
        select: { finishedAt: true, unverified: true },
      }),
      db().parityRun.findFirst({
        where: { planId, status: "complete" },
        orderBy: { finishedAt: "desc" },
        select: { finishedAt: true },
      }),
      db().parityMismatch.groupBy({
        by: ["tenantKey"],
        where: { planId, status: "open" },
        _count: true,
      }),
      db().routingMap.findUnique({ where: { planId }, select: { fenceInstalledAt: true } }),
      // A refusal while its tenant was being cut over is the cutover's own: a router's write in
      // flight when the fence closed, which the SDK retries on the owner. Counted apart, it neither
      // fails the gate nor trips the breaker — otherwise every promotion under load stops itself.
      // The window runs from the attempt's request to a little after its end, since the fence
      // watch records refusals when it next reads the counters (seconds later on a loaded machine).
      // A refusal whose tenant the ring lost (null) is the cutover's if any attempt was in its
      // window. Forward CDC's drops after a flip (applied_after_flip) always count.
      db().$queryRaw<
        {
          observed_at: Date;
          database_name: string;
          tenant_key: string | null;
          count: number;
          during_cutover: boolean;
        }[]
      >`
        select s.observed_at, s.database_name, s.tenant_key, s.count,
               s.reason <> 'applied_after_flip' and exists (
                 select 1 from tenant_cutover c
                 where c.plan_id = s.plan_id and (s.tenant_key is null or c.tenant_key = s.tenant_key)
                   and s.observed_at >= c.created_at - ${STRAY_GRACE_BEFORE_MS} * interval '1 millisecond'
                   and s.observed_at <= coalesce(c.ended_at, ${now}) + ${STRAY_GRACE_AFTER_MS} * interval '1 millisecond'
               ) as during_cutover
        from stray_write s
        where s.plan_id = ${planId}::uuid and s.observed_at >= ${since} and s.observed_at <= ${now}`,
      // The newest probe of each shard, and the newest it answered.
      db().metricSample.groupBy({
        by: ["name"],
        where: { planId, name: { in: probeNames }, at: { lte: now } },
        _max: { at: true },
      }),
      db().metricSample.groupBy({
        by: ["name"],
        where: { planId, name: { in: probeNames }, value: 1, at: { lte: now } },
        _max: { at: true },
      }),
      db().metricSample.groupBy({
        by: ["name"],
        where: {
          planId,
          name: { in: shards.flatMap((s) => [sdkRequestsMetric(s.ordinal), sdkErrorsMetric(s.ordinal)]) },
          at: { gte: tripSince, lte: now },
        },
        _sum: { value: true },
        _max: { at: true },
      }),
      db().engineEvent.findMany({
        where: { planId, source: BREAKER_EVENT_SOURCE, level: "error", at: { gte: since, lte: now } },
        orderBy: { at: "asc" },
        select: { at: true, message: true },
      }),
    ]);

  const series = (name: string): Sample[] =>
    lag.filter((s) => s.name === name).map((s) => ({ at: s.at, value: s.value }));
  const newestProbe = new Map(probes.map((p) => [p.name, p._max.at]));
  const newestAnswer = new Map(answered.map((p) => [p.name, p._max.at]));
  // The newest probe answered iff the newest answered probe is that one.
  // The first failed probe after each shard's last answer: where its outage began, as probed.
  const downSince = new Map(
    await Promise.all(
      probeNames.map(async (name) => {
        const last = newestAnswer.get(name) ?? null;
        const first = await db().metricSample.findFirst({
          where: { planId, name, value: { not: 1 }, at: { lte: now, ...(last ? { gt: last } : {}) } },
          orderBy: { at: "asc" },
          select: { at: true },
        });
        return [name, first?.at ?? null] as const;
      }),
    ),
  );
  const sdkBy = new Map(sdk.map((s) => [s.name, s]));
  const unverified = Array.isArray(lastFull?.unverified)
    ? (lastFull.unverified as { tenant?: unknown }[])
    : [];

  return {
    now,
    forwardLag: series(FORWARD_LAG_METRIC),
    reverseLag: series(REVERSE_LAG_METRIC),
    forwardExpected: movement?.status === "running" || movement?.status === "paused",
    onShard: new Set(routes.map((r) => r.tenantKey)),
    parity: {
      lastFullAt: lastFull?.finishedAt ?? null,
      lastCheckAt: lastCheck?.finishedAt ?? null,
      openByTenant: new Map(
        open.flatMap((o) => (o.tenantKey === null ? [] : [[o.tenantKey, o._count] as const])),
      ),
      unverifiedTenants: new Set(unverified.flatMap((u) => (typeof u.tenant === "string" ? [u.tenant] : []))),
    },
    fencesInstalledAt: map?.fenceInstalledAt ?? null,
    strayWrites: strays
      .filter((w) => !w.during_cutover)
      .map((w) => ({ at: w.observed_at, database: w.database_name, tenant: w.tenant_key, count: w.count })),
    strayWritesDuringCutovers: strays.filter((w) => w.during_cutover).reduce((n, w) => n + w.count, 0),
    shards: shards.map((s) => {
      const name = reachabilityMetric(s.ordinal);
      const lastProbeAt = newestProbe.get(name) ?? null;
      const lastReachableAt = newestAnswer.get(name) ?? null;
      return {
        ordinal: s.ordinal,
        name: s.database.name,
        lastProbeAt,
        reachable: lastProbeAt ? lastReachableAt?.getTime() === lastProbeAt.getTime() : null,
        lastReachableAt,
        downSince: downSince.get(name) ?? null,
      };
    }),
    sdk: shards.map((s) => {
      const requests = sdkBy.get(sdkRequestsMetric(s.ordinal));
      const errors = sdkBy.get(sdkErrorsMetric(s.ordinal));
      return {
        ordinal: s.ordinal,
        name: s.database.name,
        requests: requests?._sum.value ?? 0,
        errors: errors?._sum.value ?? 0,
        reportedAt: requests?._max.at ?? null,
      };
    }),
    trips: trips.map((t) => ({ at: t.at, message: t.message })),
  };
}

/**
 * Cohort `ordinal` of the drawn ladder: its tenants, nested (with tenants the census found after the
 * draw in the last cohort), and how far the cohort before it got onto its shards.
 */
export async function loadCohortFacts(planId: string, ordinal: number): Promise<CohortFacts | null> {
  const cohorts = await db().cohort.findMany({ where: { planId }, select: { ordinal: true } });
  if (!cohorts.some((c) => c.ordinal === ordinal)) return null;
  const last = Math.max(...cohorts.map((c) => c.ordinal));
  const members = await db().$queryRaw<
    { tenant_key: string; ordinal: number; on_shard: boolean; routed_at: Date | null }[]
  >`
    with members as (
      select tenant_key, ordinal from cohort_member where plan_id = ${planId}::uuid and ordinal is not null
      union all
      select distinct c.tenant_key, ${last}::int from tenant_census c
      where c.plan_id = ${planId}::uuid
        and not exists (select 1 from cohort_member m where m.plan_id = c.plan_id and m.tenant_key = c.tenant_key)
    )
    select m.tenant_key, m.ordinal, coalesce(r.owner_database_id is not null, false) as on_shard,
           r.updated_at as routed_at
    from members m
    left join tenant_route r on r.plan_id = ${planId}::uuid and r.tenant_key = m.tenant_key
    where m.ordinal <= ${ordinal}::int`;
  const previousMembers = members.filter((m) => m.ordinal <= ordinal - 1);
  const flips = previousMembers.flatMap((m) => (m.on_shard && m.routed_at ? [m.routed_at.getTime()] : []));
  return {
    ordinal,
    tenants: members.map((m) => m.tenant_key),
    previous:
      ordinal === 1
        ? null
        : {
            ordinal: ordinal - 1,
            tenants: previousMembers.length,
            onShard: previousMembers.filter((m) => m.on_shard).length,
            lastFlipAt: flips.length ? new Date(Math.max(...flips)) : null,
          },
  };
}
