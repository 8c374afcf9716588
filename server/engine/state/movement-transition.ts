// Applies a movement event (engine/state/movement.ts) to the stored status under the row's lock,
// inside the caller's transaction. Reading the status and writing the next one in one locked step is
// what keeps concurrent operators and workers from each acting on a status that no longer holds:
// without it a cancel and four pauses all "succeeded" and the movement ended paused with its slot
// alive. The caller writes its audit event in the same transaction, so each real change is audited
// exactly once and a refused one not at all.
import type { Prisma } from "../../generated/prisma/client";
import { type MovementEvent, type MovementStatus, nextMovementStatus } from "./movement";

export interface LockedMovement {
  status: MovementStatus;
  startedAt: Date;
}

/**
 * Locks the plan's movement row until the transaction ends; null when there is none. `FOR NO KEY
 * UPDATE`, like every control lock on plan rows: it excludes the other controls as `FOR UPDATE`
 * would, but not the key-share locks that inserts into referencing tables (samples, events, tasks)
 * take, so an operator's pause does not queue behind the engine's bookkeeping.
 */
export async function lockMovement(
  tx: Prisma.TransactionClient,
  planId: string,
): Promise<LockedMovement | null> {
  const rows = await tx.$queryRaw<{ status: MovementStatus; started_at: Date }[]>`
    select status::text as status, started_at from data_movement where plan_id = ${planId}::uuid for no key update`;
  const row = rows[0];
  return row ? { status: row.status, startedAt: row.started_at } : null;
}

export type MovementTransition =
  | { ok: true; from: MovementStatus; to: MovementStatus }
  | { ok: false; reason: string; status: MovementStatus | null };

/**
 * Moves the plan's movement by `event` if its current status allows it, writing `data` with it.
 * `startedAt` pins the movement a caller began with: a movement cancelled and started again
 * meanwhile is another one, and is left alone.
 */
export async function transitionMovement(
  tx: Prisma.TransactionClient,
  planId: string,
  event: MovementEvent,
  options: { data?: Omit<Prisma.DataMovementUpdateInput, "status">; startedAt?: Date } = {},
): Promise<MovementTransition> {
  const current = await lockMovement(tx, planId);
  if (!current) {
    return { ok: false, status: null, reason: "No data movement has been started for this plan." };
  }
  if (options.startedAt && current.startedAt.getTime() !== options.startedAt.getTime()) {
    return {
      ok: false,
      status: current.status,
      reason: "The data movement was started again meanwhile; this step belonged to the earlier one.",
    };
  }
  const outcome = nextMovementStatus(current.status, event);
  if (!outcome.ok) return { ok: false, status: current.status, reason: outcome.reason };
  await tx.dataMovement.update({ where: { planId }, data: { ...options.data, status: outcome.to } });
  return { ok: true, from: current.status, to: outcome.to };
}
