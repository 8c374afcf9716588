// The last step of cancelling a data movement, run by the supervisor (any worker) once the
// movement is "cancelling": drop the slot and publication on legacy, then record "cancelled".
// Engine code (the engine never calls back into server/services); the shards' replication origins
// are dropped by the supervisor just before.
//
// The movement's row stays locked from the status check to the record: two workers finishing the
// same cancel take turns (the second finds "cancelled" and does nothing), and no new start can
// claim the movement between the check and the drop — the slot's name is the plan's, so a worker
// that checked before such a start would otherwise drop the new movement's slot.

import { dropPublication, dropSlot } from "../cdc/slot";
import { withClient } from "../sql/connect";
import { lockMovement, transitionMovement } from "../state/movement-transition";
import { db } from "../store/db";
import { databaseUrl } from "../store/movement-context";

/** Long enough for a slot drop that first terminates its consumer; far past Prisma's 5 s default. */
const FINISH_TIMEOUT_MS = 60_000;

export async function finishCancel(planId: string): Promise<void> {
  await db().$transaction(
    async (tx) => {
      const current = await lockMovement(tx, planId);
      if (current?.status !== "cancelling") return;
      const movement = await tx.dataMovement.findUniqueOrThrow({ where: { planId } });
      const plan = await tx.plan.findUniqueOrThrow({ where: { id: planId } });
      const url = await databaseUrl(plan.sourceDatabaseId);
      await withClient(url, async (c) => {
        await dropSlot(c, movement.slotName, { terminateActive: true });
        await dropPublication(c, movement.publicationName);
      });
      const outcome = await transitionMovement(tx, planId, "cancelled", { startedAt: current.startedAt });
      if (!outcome.ok) return;
      await tx.backfillTask.updateMany({
        where: { planId, status: { not: "done" } },
        data: { status: "cancelled" },
      });
      await tx.engineEvent.create({
        data: {
          planId,
          level: "info",
          source: "movement",
          message: `Cancelled: dropped slot ${movement.slotName} and publication ${movement.publicationName}.`,
        },
      });
    },
    { timeout: FINISH_TIMEOUT_MS, maxWait: 10_000 },
  );
}
