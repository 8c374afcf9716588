// Admin changes to people (roles, disable/enable, password resets) run one at a time, and only for
// an actor who is still an enabled admin when the change is made. The role check at the door ran
// before the transaction: two admins disabling or demoting each other at once both passed it and
// left no admin who could sign in, and concurrent role changes each read the role before the others
// wrote theirs, so their audit events disagreed with what was stored.
import type { Prisma } from "../../db";
import { AppError } from "../../errors";
import type { Actor } from "../actor";

/** One lock for all admin changes to people: they are rare, and some read more than one row. */
const ADMIN_CHANGE_LOCK = 7_363_501;

/**
 * Takes the admin-change lock for the rest of the transaction, then refuses an actor whose account
 * was disabled, demoted or removed since the request was authorized. (In-process system actors,
 * without an account, are not checked.)
 */
export async function lockAdminChange(tx: Prisma.TransactionClient, actor: Actor): Promise<void> {
  await tx.$executeRaw`select pg_advisory_xact_lock(${ADMIN_CHANGE_LOCK}, 0)`;
  if (actor.id === null) return;
  const self = await tx.user.findUnique({
    where: { id: actor.id },
    select: { role: true, disabledAt: true },
  });
  if (!self || self.disabledAt || self.role !== "admin") {
    throw new AppError(
      "FORBIDDEN",
      "Your account was disabled or is no longer an admin (another admin changed it a moment ago). Nothing was changed.",
    );
  }
}
