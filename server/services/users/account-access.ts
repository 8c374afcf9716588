// Locking people out: disable (and enable) an account, reset someone's password, sign out
// everywhere, change one's own password. Each deletes the sessions it must in the same transaction
// as the change and its audit event, so a revoked session stops working on its next request (the
// session cookie cache is off: every request reads the session row).
//
// Concurrency: the state change is a conditional UPDATE (e.g. "disabled_at is null"), so of twenty
// identical calls at once exactly one changes the row and writes the event; the others find
// nothing to do and say so.
import { hashPassword, verifyPassword } from "better-auth/crypto";
import { SIGN_IN_PER_ACCOUNT } from "../../auth/auth";
import { countInWindow } from "../../auth/throttle";
import { db, type Prisma } from "../../db";
import { AppError } from "../../errors";
import type { Actor } from "../actor";
import { appendAuditEvent } from "../audit/audit-log";
import { lockAdminChange } from "./admin-guard";

type Tx = Prisma.TransactionClient;

async function otherUser(tx: Tx, actor: Actor, userId: string, what: string) {
  if (userId === actor.id) {
    throw new AppError("PRECONDITION_FAILED", `You cannot ${what} your own account: ask another admin.`);
  }
  const user = await tx.user.findUnique({ where: { id: userId }, select: { id: true, email: true } });
  if (!user) throw new AppError("NOT_FOUND", "No such user: the list may be out of date, reload it.");
  return user;
}

export async function disableUser(actor: Actor, input: { userId: string; reason: string }) {
  return db().$transaction(async (tx) => {
    await lockAdminChange(tx, actor);
    const user = await otherUser(tx, actor, input.userId, "disable");
    const { count } = await tx.user.updateMany({
      where: { id: user.id, disabledAt: null },
      data: { disabledAt: new Date(), disabledReason: input.reason },
    });
    if (!count) return { changed: false, sessionsRevoked: 0 };
    const revoked = await tx.session.deleteMany({ where: { userId: user.id } });
    await appendAuditEvent(tx, {
      actor,
      action: "user.disable",
      target: { type: "user", id: user.id },
      before: { email: user.email, disabled: false },
      after: { email: user.email, disabled: true, sessionsRevoked: revoked.count },
      reason: input.reason,
    });
    return { changed: true, sessionsRevoked: revoked.count };
  });
}

export async function enableUser(actor: Actor, input: { userId: string; reason: string }) {
  return db().$transaction(async (tx) => {
    await lockAdminChange(tx, actor);
    const user = await otherUser(tx, actor, input.userId, "enable");
    const { count } = await tx.user.updateMany({
      where: { id: user.id, disabledAt: { not: null } },
      data: { disabledAt: null, disabledReason: null },
    });
    if (!count) return { changed: false };
    await appendAuditEvent(tx, {
      actor,
      action: "user.enable",
      target: { type: "user", id: user.id },
      before: { email: user.email, disabled: true },
      after: { email: user.email, disabled: false },
      reason: input.reason,
    });
    return { changed: true };
  });
}

/** An admin sets someone's password (e.g. after a leak); every session of theirs ends. */
export async function resetUserPassword(
  actor: Actor,
  input: { userId: string; newPassword: string; reason: string },
) {
  const hash = await hashPassword(input.newPassword);
  return db().$transaction(async (tx) => {
    await lockAdminChange(tx, actor);
    const user = await otherUser(tx, actor, input.userId, "reset the password of");
    const { count } = await tx.account.updateMany({
      where: { userId: user.id, providerId: "credential" },
      data: { password: hash },
    });
    if (!count) throw new AppError("PRECONDITION_FAILED", `${user.email} has no password to reset.`);
    const revoked = await tx.session.deleteMany({ where: { userId: user.id } });
    // The person can sign in with the new password now, even if someone was guessing the old one.
    await tx.throttleWindow.deleteMany({ where: { key: `sign-in:account:${user.email}` } });
    await appendAuditEvent(tx, {
      actor,
      action: "user.password.reset",
      target: { type: "user", id: user.id },
      after: { email: user.email, sessionsRevoked: revoked.count },
      reason: input.reason,
    });
    return { sessionsRevoked: revoked.count };
  });
}

/** Ends every session of the caller, this one included (a lost laptop, a shared screen). */
export async function signOutEverywhere(actor: Actor) {
  if (!actor.id) throw new AppError("UNAUTHORIZED", "Sign in to continue.");
  const userId = actor.id;
  return db().$transaction(async (tx) => {
    const revoked = await tx.session.deleteMany({ where: { userId } });
    await appendAuditEvent(tx, {
      actor,
      action: "user.sessions.revoke_all",
      target: { type: "user", id: userId },
      after: { email: actor.email, sessionsRevoked: revoked.count },
    });
    return { sessionsRevoked: revoked.count };
  });
}

/** The caller changes their own password; every other session of theirs ends, this one stays. */
export async function changeOwnPassword(
  actor: Actor,
  input: { sessionId: string | undefined; currentPassword: string; newPassword: string },
) {
  if (!actor.id) throw new AppError("UNAUTHORIZED", "Sign in to continue.");
  const userId = actor.id;
  const account = await db().account.findFirst({
    where: { userId, providerId: "credential" },
    select: { id: true, password: true, updatedAt: true },
  });
  if (!account?.password)
    throw new AppError("PRECONDITION_FAILED", "Your account has no password to change.");
  // Each check of the current password spends the account's sign-in budget: otherwise a stolen
  // session could guess the password here as fast as the server hashes, and keep it.
  const attempts = await countInWindow(
    db(),
    `sign-in:account:${actor.email.trim().toLowerCase()}`,
    SIGN_IN_PER_ACCOUNT.window,
  );
  if (attempts.count > SIGN_IN_PER_ACCOUNT.max) {
    throw new AppError(
      "TOO_MANY_REQUESTS",
      `Too many password checks for this account. Wait ${Math.round(SIGN_IN_PER_ACCOUNT.window / 60)} minutes, or ask an admin to reset the password.`,
      { field: "currentPassword" },
    );
  }
  if (!(await verifyPassword({ hash: account.password, password: input.currentPassword }))) {
    throw new AppError("BAD_REQUEST", "That is not your current password.", { field: "currentPassword" });
  }
  const hash = await hashPassword(input.newPassword);
  return db().$transaction(async (tx) => {
    // Only if nobody changed it since we checked it (a concurrent change or reset wins alone).
    const { count } = await tx.account.updateMany({
      where: { id: account.id, password: account.password },
      data: { password: hash },
    });
    if (!count) {
      throw new AppError("CONFLICT", "Your password was changed meanwhile. Sign in again with the new one.");
    }
    const revoked = await tx.session.deleteMany({
      where: { userId, ...(input.sessionId ? { id: { not: input.sessionId } } : {}) },
    });
    await appendAuditEvent(tx, {
      actor,
      action: "user.password.change",
      target: { type: "user", id: userId },
      after: { email: actor.email, otherSessionsRevoked: revoked.count },
    });
    return { otherSessionsRevoked: revoked.count };
  });
}
