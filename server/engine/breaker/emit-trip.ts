// The ONE place a trip is emitted, by a person (the service) or by a rule (the engine): the trip's
// row, its engine event on the plan (level error, source "breaker": what the gates count as a trip,
// load-facts.ts), its audit event (the caller's writer, same transaction) and the wake-up of the
// workers (NOTIFY, delivered on commit). Notification channels, later, hang off here too.
import type { Prisma } from "../../generated/prisma/client";
import type { TBreakerScope } from "../../schemas/breaker";
import { BREAKER_EVENT_SOURCE } from "../gates/load-facts";
import { NOTIFY_ENGINE_SQL } from "../runtime/wake";
import { recordEngineEvent } from "../store/movement-context";

export interface TripRequest {
  planId: string;
  scope: TBreakerScope;
  /** "manual" or the trip rule that fired. */
  trigger: string;
  evidence?: unknown;
  actor: { id: string | null; email: string };
  reason: string;
  budgetMs: number;
  /** Tenants of the scope on shards when it was asked (the runner reads the set again). */
  tenantCount: number;
}

export type TripAuditWriter = (
  tx: Prisma.TransactionClient,
  trip: { id: string } & TripRequest,
) => Promise<void>;

export function scopeLabel(scope: TBreakerScope, shardName?: (id: string) => string): string {
  if (scope.kind === "all") return "every tenant on the shards";
  if (scope.kind === "shard") return `every tenant on ${shardName?.(scope.databaseId) ?? scope.databaseId}`;
  if (scope.kind === "cohort")
    return scope.andLater
      ? `the tenants of cohort ${scope.ordinal} and every later cohort`
      : `the tenants of cohort ${scope.ordinal}`;
  return scope.tenants.length === 1 ? `tenant ${scope.tenants[0]}` : `${scope.tenants.length} named tenants`;
}

/** Writes the trip inside the caller's transaction (the plan's row should be locked by it). */
export async function emitTrip(
  tx: Prisma.TransactionClient,
  request: TripRequest,
  audit: TripAuditWriter,
): Promise<{ tripId: string }> {
  const row = await tx.breakerTrip.create({
    data: {
      planId: request.planId,
      status: "tripped",
      scope: request.scope as unknown as Prisma.InputJsonValue,
      trigger: request.trigger,
      evidence: (request.evidence ?? undefined) as Prisma.InputJsonValue | undefined,
      requestedById: request.actor.id,
      requestedByEmail: request.actor.email,
      reason: request.reason,
      budgetMs: request.budgetMs,
      steps: [{ status: "tripped", at: new Date().toISOString() }],
    },
    select: { id: true },
  });
  await recordEngineEvent(
    request.planId,
    "error",
    BREAKER_EVENT_SOURCE,
    `Breaker tripped (${request.trigger === "manual" ? `by ${request.actor.email}` : `rule ${request.trigger}`}): ${scopeLabel(request.scope)}, ${request.tenantCount} tenants on shards — ${request.reason}`,
    tx,
  );
  await audit(tx, { id: row.id, ...request });
  await tx.$executeRawUnsafe(NOTIFY_ENGINE_SQL, request.planId);
  return { tripId: row.id };
}
