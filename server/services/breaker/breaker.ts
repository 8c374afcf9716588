// The rollback breaker, control-plane side (docs/breaker.md): what a trip would do (preview), the
// trip itself (operator+), re-arming (admin) and the history. A trip only writes the trip row with
// its audit event and wakes the workers; a worker drives the rollback
// (server/engine/breaker/run-rollback.ts). Every attempt is audited, refused ones included: a role
// refusal by the tRPC middleware (access.refused), a refusal on the plan's state here
// (breaker.trip.refused, breaker.rearm.refused), each with what stopped it.
import { db } from "../../db";
import { emitTrip, scopeLabel, type TripAuditWriter } from "../../engine/breaker/emit-trip";
import type { BreakerAuditWriter } from "../../engine/breaker/run-rollback";
import { cutoversOfScope, tenantsInScope } from "../../engine/breaker/scope";
import type { TenantOutcome } from "../../engine/breaker/trip-store";
import { REVERSE_LAG_METRIC, recentLagMs } from "../../engine/cutover/precheck";
import {
  type BreakerStatus,
  breakerInFlight,
  nextBreakerStatus,
  planBreakerState,
} from "../../engine/state/breaker";
import { AppError } from "../../errors";
import type { Prisma } from "../../generated/prisma/client";
import type {
  TBreakerHistoryInput,
  TBreakerPreviewInput,
  TBreakerRearmInput,
  TBreakerScope,
  TBreakerTripInput,
} from "../../schemas/breaker";
import type { Actor } from "../actor";
import { appendAuditEvent } from "../audit/audit-log";
import { lockPlanForControl } from "../movement/cancel-guard";

const DEFAULT_BUDGET_MS = 2_000;
const LISTED = 50;

export interface BreakerPreview {
  planId: string;
  state: BreakerStatus;
  scope: TBreakerScope;
  scopeLabel: string;
  /** Tenants of the scope on shards now: what the rollback moves. */
  tenantCount: number;
  /** The first of them (at most 50). */
  tenants: string[];
  byShard: { databaseId: string; name: string; tenants: number }[];
  /** Named tenants legacy already owns (nothing to do for them). */
  alreadyOnLegacy: string[];
  budgetMs: number;
  reverseLagMs: number | null;
  /** Cutovers in flight the rollback waits for (not yet claimed ones it aborts). */
  cutoversInFlight: number;
  /** "Roll back 12 tenants on shard-0, shard-1; their writes pause for up to 2 s." */
  summary: string;
  blockers: string[];
}

async function planOf(planId: string) {
  const plan = await db().plan.findUnique({
    where: { id: planId },
    select: {
      settings: true,
      shards: { orderBy: { ordinal: "asc" }, select: { database: { select: { id: true, name: true } } } },
      movement: { select: { status: true } },
    },
  });
  if (!plan) {
    throw new AppError(
      "NOT_FOUND",
      "This plan does not exist (it may have been deleted). Go back to the plans list.",
    );
  }
  return plan;
}

type PlanRow = Awaited<ReturnType<typeof planOf>>;

async function newestTrip(planId: string, store: Pick<Prisma.TransactionClient, "breakerTrip"> = db()) {
  return store.breakerTrip.findFirst({ where: { planId }, orderBy: { createdAt: "desc" } });
}

/**
 * What a trip of `scope` would do. The plan's row (`planRead`, usually still in flight) and every
 * other read go at once: a trip's service call is on the path from the click to the flip.
 */
async function shapeTrip(
  planRead: Promise<PlanRow>,
  planId: string,
  scope: TBreakerScope,
): Promise<BreakerPreview> {
  const [plan, cohort, reading, newest, inFlight, reverseLagMs] = await Promise.all([
    planRead,
    scope.kind === "cohort"
      ? db().cohort.findUnique({
          where: { planId_ordinal: { planId, ordinal: scope.ordinal } },
          select: { ordinal: true },
        })
      : null,
    tenantsInScope(db(), planId, scope),
    newestTrip(planId),
    cutoversOfScope(db(), planId, scope).then((where) => db().tenantCutover.count({ where })),
    recentLagMs(planId, REVERSE_LAG_METRIC),
  ]);
  const shardNames = new Map(plan.shards.map((s) => [s.database.id, s.database.name]));
  const settings = plan.settings as { freezeBudgetMs?: unknown };
  const budgetMs = typeof settings.freezeBudgetMs === "number" ? settings.freezeBudgetMs : DEFAULT_BUDGET_MS;
  const blockers: string[] = [];
  if (scope.kind === "shard" && !shardNames.has(scope.databaseId)) {
    blockers.push(`Database ${scope.databaseId} is not a shard of this plan: choose one of its shards.`);
  }
  if (scope.kind === "cohort" && !cohort) {
    blockers.push(
      `The plan's ladder has no cohort ${scope.ordinal}: draw the ladder first, or pick one of its cohorts.`,
    );
  }
  const state = planBreakerState(newest);
  if (newest && breakerInFlight(state)) {
    blockers.push(
      `The breaker is already ${state === "tripped" ? "tripped and waiting for a worker" : "rolling back"} (tripped by ${newest.requestedByEmail} at ${newest.createdAt.toISOString()}): wait for that rollback to end.`,
    );
  }
  if (!plan.movement || (plan.movement.status !== "running" && plan.movement.status !== "paused")) {
    blockers.push(
      `The plan's data movement is ${plan.movement?.status ?? "not started"}: reverse replication only runs while it is running or paused, so nothing could be drained back.`,
    );
  }
  if (reading.onShards.length === 0 && blockers.length === 0) {
    blockers.push(
      scope.kind === "tenants"
        ? "None of these tenants is on a shard: legacy already owns them, there is nothing to roll back."
        : "No tenant of this scope is on a shard: there is nothing to roll back.",
    );
  }
  const counts = new Map<string, number>();
  for (const t of reading.onShards) counts.set(t.ownerId, (counts.get(t.ownerId) ?? 0) + 1);
  const byShard = [...counts].map(([databaseId, tenants]) => ({
    databaseId,
    name: shardNames.get(databaseId) ?? databaseId,
    tenants,
  }));
  const n = reading.onShards.length;
  const summary = `Roll back ${n} tenant${n === 1 ? "" : "s"}${byShard.length ? ` on ${byShard.map((s) => s.name).join(", ")}` : ""} to legacy; their writes pause for up to ${(budgetMs / 1000).toLocaleString("en")} s.`;
  return {
    planId,
    state,
    scope,
    scopeLabel: scopeLabel(scope, (id) => shardNames.get(id) ?? id),
    tenantCount: n,
    tenants: reading.onShards.slice(0, LISTED).map((t) => t.tenantKey),
    byShard,
    alreadyOnLegacy: reading.onLegacy.slice(0, LISTED),
    budgetMs,
    reverseLagMs: reverseLagMs === null ? null : Math.round(reverseLagMs),
    cutoversInFlight: inFlight,
    summary,
    blockers,
  };
}

/** Dry run: what a trip of this scope would do now, and what would stop it. Writes nothing. */
export async function previewBreaker(input: TBreakerPreviewInput): Promise<BreakerPreview> {
  return shapeTrip(planOf(input.planId), input.planId, input.scope);
}

/** The audit event of a trip (by a person or a rule), in the trip's transaction. */
export function auditTripAs(actor: Actor): TripAuditWriter {
  return async (tx, trip) => {
    await appendAuditEvent(tx, {
      actor,
      action: "breaker.trip",
      target: { type: "breaker_trip", id: trip.id },
      planId: trip.planId,
      after: {
        scope: trip.scope,
        trigger: trip.trigger,
        evidence: trip.evidence ?? null,
        tenantsOnShards: trip.tenantCount,
        budgetMs: trip.budgetMs,
      },
      reason: trip.reason,
    });
  };
}

/** The engine's breaker events (rollback finished, failed, interrupted), as `actor`. */
export function auditBreakerEventsAs(actor: Actor): BreakerAuditWriter {
  return async (tx, event) => {
    await appendAuditEvent(tx, {
      actor,
      action: event.action,
      target: { type: "breaker_trip", id: event.tripId },
      planId: event.planId,
      after: event.after,
      reason: event.reason,
    });
  };
}

async function auditRefusal(
  actor: Actor,
  action: string,
  planId: string,
  after: Record<string, unknown>,
  reason: string,
): Promise<void> {
  // The refusal is recorded even though nothing else is written: "every action audited".
  await db().$transaction(async (tx) => {
    await appendAuditEvent(tx, {
      actor,
      action,
      target: { type: "plan", id: planId },
      planId,
      after,
      reason,
    });
  });
}

/**
 * Trips the breaker for a scope: refused (and the refusal audited) when a blocker stands; otherwise
 * the trip row, its engine event and audit event commit together, and the workers are woken.
 */
export async function tripBreaker(
  actor: Actor,
  input: TBreakerTripInput,
): Promise<{ tripId: string; tenantCount: number }> {
  const shape = await shapeTrip(planOf(input.planId), input.planId, input.scope);
  if (shape.blockers.length > 0) {
    const message = `Cannot trip the breaker for ${shape.scopeLabel}: ${shape.blockers.join(" ")} Nothing was changed.`;
    await auditRefusal(
      actor,
      "breaker.trip.refused",
      input.planId,
      { scope: input.scope, blockers: shape.blockers },
      input.reason,
    );
    throw new AppError(
      shape.blockers.some((b) => b.includes("already")) ? "CONFLICT" : "PRECONDITION_FAILED",
      message,
    );
  }
  try {
    const result = await db().$transaction(
      async (tx) => {
        // The plan's row lock: a cutover request (which takes it too) is judged before or after.
        await lockPlanForControl(tx, input.planId);
        return emitTrip(
          tx,
          {
            planId: input.planId,
            scope: input.scope,
            trigger: "manual",
            actor,
            reason: input.reason,
            budgetMs: shape.budgetMs,
            tenantCount: shape.tenantCount,
          },
          auditTripAs(actor),
        );
      },
      { timeout: 15_000, maxWait: 10_000 },
    );
    return { tripId: result.tripId, tenantCount: shape.tenantCount };
  } catch (error) {
    const e = error as { code?: string; message?: string };
    if (e.code === "P2002" || String(e.message ?? "").includes("breaker_trip_one_in_flight")) {
      const message =
        "Another trip of this plan's breaker was made meanwhile and is in flight: wait for it to end. Nothing was changed.";
      await auditRefusal(
        actor,
        "breaker.trip.refused",
        input.planId,
        { scope: input.scope, blockers: [message] },
        input.reason,
      );
      throw new AppError("CONFLICT", message, { cause: error });
    }
    throw error;
  }
}

/**
 * Re-arms the breaker once its rollback has ended (admin): the plan's breaker reads armed again. A
 * trip that HELD tenants (their shard was down and legacy could not be shown to hold its writes)
 * is finished by the re-arm: in the same transaction a trip of exactly those tenants is emitted,
 * which rolls them back normally once their shard answers (and holds them again if it does not).
 */
export async function rearmBreaker(
  actor: Actor,
  input: TBreakerRearmInput,
): Promise<{ tripId: string; heldTripId: string | null }> {
  await planOf(input.planId);
  const refuse = async (message: string) => {
    await auditRefusal(actor, "breaker.rearm.refused", input.planId, { blockers: [message] }, input.reason);
    return new AppError(
      message.includes("already armed") ? "CONFLICT" : "PRECONDITION_FAILED",
      `${message} Nothing was changed.`,
    );
  };
  return db().$transaction(
    async (tx) => {
      await lockPlanForControl(tx, input.planId);
      const newest = await newestTrip(input.planId, tx);
      if (!newest) throw await refuse("The breaker is already armed: it never tripped.");
      const next = nextBreakerStatus(newest.status as BreakerStatus, "rearmed");
      if (!next.ok) throw await refuse(next.reason);
      const steps = [
        ...((newest.steps as unknown[]) ?? []),
        { status: "armed", at: new Date().toISOString(), note: `re-armed by ${actor.email}` },
      ];
      await tx.breakerTrip.update({
        where: { id: newest.id },
        data: {
          status: next.to,
          rearmedById: actor.id,
          rearmedByEmail: actor.email,
          rearmedAt: new Date(),
          rearmReason: input.reason,
          steps: steps as Prisma.InputJsonValue,
          updatedAt: new Date(),
        },
      });
      await appendAuditEvent(tx, {
        actor,
        action: "breaker.rearm",
        target: { type: "breaker_trip", id: newest.id },
        planId: input.planId,
        before: { status: newest.status },
        after: { status: next.to },
        reason: input.reason,
      });
      const held = Object.entries((newest.outcomes ?? {}) as unknown as Record<string, TenantOutcome>)
        .filter(([, o]) => o.outcome === "held")
        .map(([tenant]) => tenant);
      if (held.length === 0) return { tripId: newest.id, heldTripId: null };
      const heldTrip = await emitTrip(
        tx,
        {
          planId: input.planId,
          scope: { kind: "tenants", tenants: held },
          trigger: "manual",
          actor,
          reason: `Re-armed: finish the rollback of ${held.length} tenants held by trip ${newest.id} (${input.reason})`,
          budgetMs: newest.budgetMs,
          tenantCount: held.length,
        },
        auditTripAs(actor),
      );
      return { tripId: newest.id, heldTripId: heldTrip.tripId };
    },
    { timeout: 15_000, maxWait: 10_000 },
  );
}

export interface BreakerHistoryItem {
  id: string;
  status: BreakerStatus;
  trigger: string;
  scope: TBreakerScope;
  scopeLabel: string;
  requestedByEmail: string;
  reason: string;
  error: string | null;
  tenants: number;
  tenantsMoved: number;
  tenantsLeft: number;
  /** Tenants kept frozen on a shard that was down (their writes not confirmed on legacy); see `error`. */
  tenantsHeld: number;
  attempts: number;
  flipVersion: number | null;
  freezeMs: number | null;
  /** From the trip to the flip (every tenant owned by legacy). */
  tripToFlipMs: number | null;
  durationMs: number | null;
  createdAt: Date;
  endedAt: Date | null;
  rearmedByEmail: string | null;
  rearmedAt: Date | null;
  rearmReason: string | null;
  steps: { status: string; at: string; note?: string }[];
}

export interface BreakerHistory {
  state: BreakerStatus;
  trips: BreakerHistoryItem[];
}

export async function breakerHistory(input: TBreakerHistoryInput): Promise<BreakerHistory> {
  const plan = await planOf(input.planId);
  const shardNames = new Map(plan.shards.map((s) => [s.database.id, s.database.name]));
  const rows = await db().breakerTrip.findMany({
    where: { planId: input.planId },
    orderBy: { createdAt: "desc" },
    take: input.limit ?? 20,
  });
  const trips = rows.map((r): BreakerHistoryItem => {
    const outcomes = Object.values((r.outcomes ?? {}) as unknown as Record<string, TenantOutcome>);
    const scope = r.scope as unknown as TBreakerScope;
    return {
      id: r.id,
      status: r.status as BreakerStatus,
      trigger: r.trigger,
      scope,
      scopeLabel: scopeLabel(scope, (id) => shardNames.get(id) ?? id),
      requestedByEmail: r.requestedByEmail,
      reason: r.reason,
      error: r.error,
      tenants: (r.tenants as unknown[]).length,
      tenantsMoved: outcomes.filter((o) => o.outcome === "rolled_back").length,
      tenantsLeft: outcomes.filter((o) => o.outcome === "left_on_shard").length,
      tenantsHeld: outcomes.filter((o) => o.outcome === "held").length,
      attempts: r.attempts,
      flipVersion: r.flipVersion === null ? null : Number(r.flipVersion),
      freezeMs:
        r.freezeStartedAt && r.freezeEndedAt ? r.freezeEndedAt.getTime() - r.freezeStartedAt.getTime() : null,
      tripToFlipMs: r.flippedAt ? r.flippedAt.getTime() - r.createdAt.getTime() : null,
      durationMs: r.endedAt ? r.endedAt.getTime() - r.createdAt.getTime() : null,
      createdAt: r.createdAt,
      endedAt: r.endedAt,
      rearmedByEmail: r.rearmedByEmail,
      rearmedAt: r.rearmedAt,
      rearmReason: r.rearmReason,
      steps: (Array.isArray(r.steps) ? r.steps : []) as BreakerHistoryItem["steps"],
    };
  });
  return { state: planBreakerState(rows[0] ?? null), trips };
}

/** Cutover requests are refused while a trip of the plan is in flight (services/routing/cutover.ts). */
export async function breakerBlocksCutover(
  store: Pick<Prisma.TransactionClient, "breakerTrip">,
  planId: string,
): Promise<string | null> {
  const trip = await store.breakerTrip.findFirst({
    where: { planId, status: { in: ["tripped", "rolling_back"] } },
    select: { requestedByEmail: true, createdAt: true },
  });
  return trip
    ? `The breaker was tripped (by ${trip.requestedByEmail} at ${trip.createdAt.toISOString()}) and its rollback is in flight: cutovers wait until it has ended.`
    : null;
}
