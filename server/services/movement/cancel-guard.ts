// Cancel drops the slot the rollback path depends on: the rule is in engine/state/movement-cancel.ts,
// judged here inside the controlling transaction, with the plan row locked so that neither a phase
// change nor another control of the same plan can slip between the check and the write.
//
// The facts are read from the routing map and the cutover attempts, not assumed: a cancel drops
// forward AND reverse replication, so a tenant a shard owns (or will own, once a cutover in flight
// flips it) would have its writes stranded on the shard — legacy never hears of them again and a
// way back would lose them. requestCutover takes the same row lock, so a request and a cancel are
// judged one after the other.
import type { db } from "../../db";
import { type CancelOutcome, decideMovementCancel } from "../../engine/state/movement-cancel";
import { AppError } from "../../errors";
import type { Prisma } from "../../generated/prisma/client";
import type { PlanPhase } from "../../schemas/plan";

type Store = Prisma.TransactionClient | ReturnType<typeof db>;

/** Every status of an attempt that may still put a tenant on a shard (or is moving one back). */
const CUTOVER_IN_FLIGHT = ["requested", "prechecking", "fencing", "draining", "flipped", "aborting"];

/** The plan's tenants the routing map sends to a shard, and its cutovers still in flight. */
export async function movementCancelOutcome(
  store: Store,
  planId: string,
  phase: PlanPhase,
): Promise<CancelOutcome> {
  const [tenantsOnShards, cutoversInFlight] = await Promise.all([
    store.tenantRoute.count({ where: { planId, ownerDatabaseId: { not: null } } }),
    store.tenantCutover.count({ where: { planId, status: { in: CUTOVER_IN_FLIGHT } } }),
  ]);
  return decideMovementCancel({ phase, tenantsOnShards, cutoversInFlight });
}

/** Locks the plan's row until the transaction ends and returns its phase. */
export async function lockPlanForControl(tx: Prisma.TransactionClient, planId: string): Promise<PlanPhase> {
  const rows = await tx.$queryRaw<{ phase: PlanPhase }[]>`
    select phase::text as phase from plan where id = ${planId}::uuid for no key update`;
  const phase = rows[0]?.phase;
  if (!phase)
    throw new AppError("NOT_FOUND", "No such plan: it may have been removed, or the link is wrong.");
  return phase;
}

/** Inside the transaction that holds the plan's row lock (lockPlanForControl). */
export async function assertMayCancel(
  tx: Prisma.TransactionClient,
  planId: string,
  phase: PlanPhase,
): Promise<void> {
  const outcome = await movementCancelOutcome(tx, planId, phase);
  if (!outcome.allowed) throw new AppError("PRECONDITION_FAILED", outcome.reason);
}
