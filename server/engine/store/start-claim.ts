// The claim a start takes before it touches a shard or legacy. Starting is slow (shards prepared,
// maybe emptied; slot dropped and created) and ran in full for every concurrent caller: ten
// concurrent starts gave nine successes, each dropping and recreating the slot, and an earlier
// copy could then leave rows on a shard that legacy had deleted. Now the first caller records the
// movement as `preparing` in one short transaction and every other caller — a double-click, a
// client retry after success, another operator, another plan aiming at the same shard — finds it
// there and is refused with the reason. The claim ends as `running` (the start's one audit event),
// or is undone if the start fails before anything ran.

import { AppError } from "../../errors";
import type { Prisma } from "../../generated/prisma/client";
import type { SourceSchema } from "../analysis/introspect";
import { INITIAL_MOVEMENT_STATUS } from "../state/movement";
import { lockMovement, transitionMovement } from "../state/movement-transition";
import { db } from "./db";

/** One lock for every claim: the "one movement per shard" check reads other plans' movements. */
const START_CLAIM_LOCK = 7_363_500;

export interface StartClaim {
  planId: string;
  /** Identifies this start's movement: a cancel and a new start meanwhile make another one. */
  startedAt: Date;
  /** No movement existed before: undoing the claim removes the row instead of marking it cancelled. */
  fresh: boolean;
}

export async function claimStart(
  planId: string,
  names: { publicationName: string; slotName: string },
  schema: SourceSchema,
  isMovementPhase: (phase: string) => boolean,
): Promise<StartClaim> {
  return db().$transaction(async (tx) => {
    await tx.$executeRaw`select pg_advisory_xact_lock(${START_CLAIM_LOCK}, 0)`;
    // Re-read under the plan's lock: it may have been archived or reverted since the caller looked.
    const [plan] = await tx.$queryRaw<{ status: string; phase: string }[]>`
      select status::text as status, phase::text as phase from plan where id = ${planId}::uuid for no key update`;
    if (!plan) throw new AppError("NOT_FOUND", "No such plan.");
    if (plan.status === "archived") throw new AppError("PRECONDITION_FAILED", "The plan is archived.");
    if (!isMovementPhase(plan.phase)) {
      throw new AppError("PRECONDITION_FAILED", "The plan left the data-movement phases meanwhile. Reload.");
    }
    await refuseBusyShards(tx, planId);

    const startedAt = new Date();
    const data = {
      ...names,
      slotLsn: null,
      confirmedLsn: null,
      lastError: null,
      startedAt,
      censusAt: null,
      sourceSchema: schema as unknown as Prisma.InputJsonValue,
    };
    const current = await lockMovement(tx, planId);
    if (!current) {
      await tx.dataMovement.create({ data: { planId, status: INITIAL_MOVEMENT_STATUS, ...data } });
      return { planId, startedAt, fresh: true };
    }
    const outcome = await transitionMovement(tx, planId, "start", { data });
    if (!outcome.ok) throw new AppError("CONFLICT", outcome.reason);
    return { planId, startedAt, fresh: false };
  });
}

/**
 * Runs a destructive step of a start (emptying a shard) only while its claim is still the
 * movement's, holding the movement's row lock throughout: a cancel (and so a new start) waits for
 * the step instead of being overtaken by it. Without this, a start
 * held up on a shard and cancelled meanwhile went on, after the cancel had finished, to empty the
 * shards and create a slot on legacy.
 */
export async function withClaimHeld<T>(claim: StartClaim, step: () => Promise<T>): Promise<T> {
  return db().$transaction(
    async (tx) => {
      await assertClaimCurrent(tx, claim);
      return step();
    },
    // Held while a shard is emptied.
    { timeout: 120_000, maxWait: 60_000 },
  );
}

/**
 * The claim is still the movement's (checked, not held): for creating the slot, which waits for
 * every transaction running in legacy's cluster — a lock held here would be one of them whenever
 * the control plane shares that cluster. A cancel after this check is caught at `prepared`, and
 * the slot dropped by releaseClaim.
 */
export async function checkClaimCurrent(claim: StartClaim): Promise<void> {
  await db().$transaction((tx) => assertClaimCurrent(tx, claim));
}

async function assertClaimCurrent(tx: Prisma.TransactionClient, claim: StartClaim): Promise<void> {
  const current = await lockMovement(tx, claim.planId);
  if (current?.status !== "preparing" || current.startedAt.getTime() !== claim.startedAt.getTime()) {
    throw new AppError(
      "CONFLICT",
      "The data movement was cancelled while it was being started, so it was not started; nothing more was done on the shards or legacy.",
    );
  }
}

/** The same shard must not be filled by two movements at once: they would overwrite each other. */
async function refuseBusyShards(tx: Prisma.TransactionClient, planId: string) {
  const shards = await tx.planShard.findMany({ where: { planId }, select: { databaseId: true } });
  const busy = await tx.dataMovement.findFirst({
    where: {
      planId: { not: planId },
      status: { not: "cancelled" },
      plan: { shards: { some: { databaseId: { in: shards.map((s) => s.databaseId) } } } },
    },
    include: { plan: { select: { name: true } } },
  });
  if (busy) {
    throw new AppError(
      "CONFLICT",
      `Plan "${busy.plan.name}" is moving data into the same shard(s) (its movement is ${busy.status}). Cancel it first; two movements into one shard would overwrite each other.`,
    );
  }
}

/**
 * Undoes the claim of a start that failed: `dropReplication` removes what the start created on
 * legacy, and the movement goes back to none (or cancelled) — all only while the movement is still
 * this start's. If someone cancelled it meanwhile the supervisor's cancel finishes it; if it was
 * cancelled and started again, the slot of the same name is the newer start's and stays.
 */
export async function releaseClaim(claim: StartClaim, dropReplication?: () => Promise<void>): Promise<void> {
  await db().$transaction(
    async (tx) => {
      const current = await lockMovement(tx, claim.planId);
      if (current?.startedAt.getTime() !== claim.startedAt.getTime()) return;
      // A slot nobody streams retains WAL until legacy's disk fills: drop it now, not "later".
      try {
        await dropReplication?.();
      } catch (error) {
        // The claim stays, as the slot's owner: once this start has ended, the workers' slot watch
        // finds a `preparing` movement nobody starts and retries the drop (interrupted-start.ts).
        // Giving the claim up here left a slot no movement named.
        console.error("[movement] could not drop the slot of a failed start; the workers will", error);
        return;
      }
      if (current.status !== "preparing") return;
      if (claim.fresh) {
        await tx.dataMovement.delete({ where: { planId: claim.planId } });
      } else {
        await transitionMovement(tx, claim.planId, "abandon", { startedAt: claim.startedAt });
      }
    },
    // Held while legacy drops the slot (bounded by withClient's connect timeout and the drop itself).
    { timeout: 60_000 },
  );
}
