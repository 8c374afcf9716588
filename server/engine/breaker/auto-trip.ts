// The breaker trips by itself (issue 13): every few seconds, for every plan whose data is moving
// (running, paused, or failed) and that has tenants on shards, the worker judges the trip rules (gates/trip-rules.ts) on the
// measured facts, and when a rule says TRIP while the breaker is armed it emits a trip through
// emitTrip — the one place trips are made — with the rule as the actor, its id as the trigger and
// every failing rule's judgement (value, threshold, reason, evidence window) as the evidence.
//
// Design and invariants:
// - Off every request path and beside the supervisor's tick (like the shard watch): judging reads a
//   dozen indexed rows per plan; replication runs in its own threads and never waits for this.
// - One trip per episode: a rule trips only an ARMED breaker (no trip yet, or the newest one
//   re-armed by an admin), checked again under the plan's row lock in the trip's own transaction,
//   and the partial unique index allows one trip in flight per plan. While a trip stands (tripped,
//   rolling back, rolled back or failed) a still-firing rule emits nothing; after the re-arm, a rule
//   still firing trips again at the next round — re-arming is the human's "the cause is fixed".
// - Inconclusive never trips (the rules' own contract): only verdict "fail" counts.
// - Scope (autoTripScope): a shard's own failure — shard-down, sdk-error-rate — trips the tenants
//   of that shard; the plan-wide rules (parity-drift, forward-lag, reverse-lag, stray-writes) trip
//   every tenant on the shards, as does a shard rule firing for two shards at once (a scope names
//   one shard). When both kinds fire, the plan-wide scope contains the other.
import type { Prisma } from "../../generated/prisma/client";
import type { TBreakerScope } from "../../schemas/breaker";
import { DEFAULT_PLAN_SETTINGS, type TPlanSettings, ZPlanSettings } from "../../schemas/plan";
import type { MeasuredFacts } from "../gates/facts";
import type { Judgement } from "../gates/judgement";
import { loadMeasuredFacts } from "../gates/load-facts";
import { sdkErrorRateRule, shardDownRule, tripping, tripRules } from "../gates/trip-rules";
import { planBreakerState } from "../state/breaker";
import { db } from "../store/db";
import { emitTrip, type TripAuditWriter } from "./emit-trip";
import { tenantsInScope } from "./scope";

export const AUTO_TRIP_INTERVAL_MS = 3_000;

/** Rules whose failure belongs to one shard: they trip that shard's tenants only. */
export const SHARD_RULES = new Set(["shard-down", "sdk-error-rate"]);

/** The actor a rule trips as (in the audit log and on the trip). */
export function ruleActorEmail(ruleId: string): string {
  return `rule:${ruleId}@shardshift`;
}

/** The shards (ordinals) a shard rule fired for, as the rule itself names them. */
export function shardsFiring(ruleId: string, facts: MeasuredFacts, settings: TPlanSettings): number[] {
  const rule =
    ruleId === "shard-down" ? shardDownRule : ruleId === "sdk-error-rate" ? sdkErrorRateRule : null;
  const judgement = rule?.(facts, settings);
  return judgement?.verdict === "fail" ? (judgement.shards ?? []) : [];
}

/** What a set of failing rules trips: one shard's tenants, or every tenant on the shards. */
export function autoTripScope(
  failing: readonly Judgement[],
  shardIdOf: (ordinal: number) => string | undefined,
): TBreakerScope {
  if (failing.some((j) => !SHARD_RULES.has(j.id))) return { kind: "all" };
  const ordinals = new Set(failing.flatMap((j) => j.shards ?? []));
  const [only] = [...ordinals];
  const databaseId = ordinals.size === 1 && only !== undefined ? shardIdOf(only) : undefined;
  return databaseId ? { kind: "shard", databaseId } : { kind: "all" };
}

export function settingsOfPlan(settings: unknown): TPlanSettings {
  return ZPlanSettings.parse({ ...DEFAULT_PLAN_SETTINGS, ...(settings as object) });
}

export interface AutoTripOptions {
  /** The audit writer of a trip made by `ruleId` (the process injects the service's writer). */
  auditAs(ruleId: string): TripAuditWriter;
  log(message: string): void;
}

/** One plan's judgement; returns the trip made, if any. */
export async function judgePlanForTrip(
  planId: string,
  options: AutoTripOptions,
  now = new Date(),
): Promise<{ tripId: string; trigger: string; scope: TBreakerScope } | null> {
  const plan = await db().plan.findUnique({
    where: { id: planId },
    select: { settings: true, shards: { select: { ordinal: true, databaseId: true } } },
  });
  if (!plan) return null;
  const newest = await db().breakerTrip.findFirst({
    where: { planId },
    orderBy: { createdAt: "desc" },
    select: { status: true },
  });
  if (planBreakerState(newest) !== "armed") return null;
  const settings = settingsOfPlan(plan.settings);
  const facts = await loadMeasuredFacts(planId, settings, now);
  if (facts.onShard.size === 0) return null;
  const failing = tripping(tripRules(facts, settings));
  const primary = failing.find((j) => SHARD_RULES.has(j.id)) ?? failing[0];
  if (!primary) return null;
  const ids = new Map(plan.shards.map((s) => [s.ordinal, s.databaseId]));
  const scope = autoTripScope(failing, (o) => ids.get(o));
  const evidence = {
    rules: failing.map((j) => ({
      id: j.id,
      title: j.title,
      value: j.value,
      threshold: j.threshold,
      unit: j.unit,
      reason: j.reason,
      evidence: {
        chart: j.evidence.chart,
        from: j.evidence.from.toISOString(),
        to: j.evidence.to.toISOString(),
      },
    })),
    judgedAt: now.toISOString(),
  };
  const reason = failing.map((j) => `${j.id}: ${j.reason}`).join(" ");
  const made = await db().$transaction(
    async (tx) => {
      await tx.$queryRaw`select 1 from plan where id = ${planId}::uuid for no key update`;
      // Again under the lock: another worker (or a person) may have tripped meanwhile.
      const current = await tx.breakerTrip.findFirst({
        where: { planId },
        orderBy: { createdAt: "desc" },
        select: { status: true },
      });
      if (planBreakerState(current) !== "armed") return null;
      const reading = await tenantsInScope(tx, planId, scope);
      if (reading.onShards.length === 0) return null;
      return emitTrip(
        tx,
        {
          planId,
          scope,
          trigger: primary.id,
          evidence: evidence as unknown as Prisma.InputJsonValue,
          actor: { id: null, email: ruleActorEmail(primary.id) },
          reason,
          budgetMs: settings.freezeBudgetMs,
          tenantCount: reading.onShards.length,
        },
        options.auditAs(primary.id),
      );
    },
    { timeout: 15_000, maxWait: 10_000 },
  );
  if (!made) return null;
  options.log(`[breaker] plan ${planId} tripped by rule ${primary.id} (${scope.kind}): ${reason}`);
  return { tripId: made.tripId, trigger: primary.id, scope };
}

/**
 * Every plan whose data is moving (or whose movement failed: forward CDC fails it when a shard
 * stays unreachable, and the shard's tenants still need the breaker) and whose map gives a shard a
 * tenant.
 */
export async function autoTripRound(options: AutoTripOptions): Promise<void> {
  const plans = await db().$queryRaw<{ plan_id: string }[]>`
    select m.plan_id::text as plan_id from data_movement m
    where m.status in ('running', 'paused', 'failed')
      and exists (select 1 from tenant_route r where r.plan_id = m.plan_id and r.owner_database_id is not null)`;
  for (const { plan_id } of plans) {
    await judgePlanForTrip(plan_id, options).catch((error) => {
      const e = error as { code?: string; message?: string };
      // Another worker's trip committed first: the index said so, nothing to do.
      if (e.code === "P2002" || String(e.message ?? "").includes("breaker_trip_one_in_flight")) return;
      options.log(`[breaker] judging plan ${plan_id}: ${e.message}`);
    });
  }
}

export interface AutoTripWatch {
  stop(): Promise<void>;
}

export function startAutoTrip(options: AutoTripOptions & { intervalMs?: number }): AutoTripWatch {
  const intervalMs = options.intervalMs ?? AUTO_TRIP_INTERVAL_MS;
  let stopped = false;
  let busy = false;
  let round: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    // A round slower than the interval (a loaded control plane) is not queued behind: skipped.
    if (busy || stopped) return;
    busy = true;
    round = autoTripRound(options)
      .catch((e) => options.log(`[breaker] ${(e as Error).message}`))
      .finally(() => {
        busy = false;
      });
  }, intervalMs);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await round;
    },
  };
}
