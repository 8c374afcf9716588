// No slot without an owner. A start creates the slot on legacy and only then records the movement
// as running; a start whose process dies in between (kill -9, a crash, a deploy) leaves a
// `preparing` movement and a slot that nobody streams — it retains WAL until legacy's disk fills,
// shown nowhere. A live start holds the plan's start lock (plan-lock.ts) on the control plane from
// before its claim to its end, and its connection dies with its process: so a `preparing` movement
// whose lock is free was abandoned. The worker that takes the lock drops what that start may have
// created on legacy — the names are derived from the plan, so nothing needs to have been recorded —
// and gives the claim up (`abandon` → cancelled), with an event saying so. Until the drop succeeds
// the movement stays `preparing`, the slot's owner, and the next round retries.

import { dropPublication, dropSlot } from "../cdc/slot";
import { withClient } from "../sql/connect";
import { lockMovement, transitionMovement } from "../state/movement-transition";
import { db } from "../store/db";
import { databaseUrl, recordEngineEvent } from "../store/movement-context";
import { runExclusivePerPlan } from "./plan-lock";

/** Long enough for a slot drop that first terminates its consumer. */
const RECOVER_TIMEOUT_MS = 60_000;

export type InterruptedStartOutcome = "start_alive" | "not_preparing" | "recovered";

/**
 * Recovers the plan's movement if it is `preparing` and no start holds it. Throws when legacy could
 * not be reached (the movement then stays `preparing`, and a later call retries).
 */
export async function recoverInterruptedStart(
  controlPlaneUrl: string,
  planId: string,
): Promise<InterruptedStartOutcome> {
  const outcome = await runExclusivePerPlan(controlPlaneUrl, "start", planId, () =>
    db().$transaction(
      async (tx): Promise<InterruptedStartOutcome> => {
        const current = await lockMovement(tx, planId);
        if (current?.status !== "preparing") return "not_preparing";
        const movement = await tx.dataMovement.findUniqueOrThrow({ where: { planId } });
        const plan = await tx.plan.findUniqueOrThrow({ where: { id: planId } });
        const url = await databaseUrl(plan.sourceDatabaseId);
        const dropped = await withClient(url, async (c) => {
          const slot = await dropSlot(c, movement.slotName, { terminateActive: true });
          await dropPublication(c, movement.publicationName);
          return slot;
        });
        await transitionMovement(tx, planId, "abandon", { startedAt: current.startedAt });
        await recordEngineEvent(
          planId,
          "warn",
          "movement",
          `A start of this data movement stopped before it recorded the movement (its process ended). ` +
            `${dropped ? `Dropped the replication slot ${movement.slotName} it had created on legacy` : `It had created no replication slot on legacy`}` +
            ` and publication ${movement.publicationName}; nothing runs. Start the data movement again.`,
          tx,
        );
        return "recovered";
      },
      { timeout: RECOVER_TIMEOUT_MS, maxWait: 10_000 },
    ),
  );
  return outcome ?? "start_alive";
}
