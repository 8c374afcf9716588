// People and roles. Passwords are hashed with better-auth's own hasher and stored in its account
// table, so sign-in goes through better-auth unchanged; public sign-up is off (admins add people).
import crypto from "node:crypto";
import { hashPassword } from "better-auth/crypto";
import { db } from "../../db";
import { AppError } from "../../errors";
import type { TRole } from "../../schemas/user";
import type { Actor } from "../actor";
import { appendAuditEvent } from "../audit/audit-log";
import { lockAdminChange } from "./admin-guard";

export const DEMO_USERS: { email: string; name: string; role: TRole; password: string }[] = [
  { email: "admin@shardshift.local", name: "Ada Admin", role: "admin", password: "shardshift-admin" },
  {
    email: "operator@shardshift.local",
    name: "Oskar Operator",
    role: "operator",
    password: "shardshift-operator",
  },
  { email: "viewer@shardshift.local", name: "Vera Viewer", role: "viewer", password: "shardshift-viewer" },
];

export async function listUsers() {
  return db().user.findMany({
    orderBy: { createdAt: "asc" },
    select: {
      id: true,
      name: true,
      email: true,
      role: true,
      createdAt: true,
      disabledAt: true,
      disabledReason: true,
      _count: { select: { sessions: { where: { expiresAt: { gt: new Date() } } } } },
    },
  });
}

export async function createUser(
  actor: Actor,
  input: { name: string; email: string; role: TRole; password: string },
): Promise<{ id: string }> {
  const email = input.email.toLowerCase();
  if (await db().user.findUnique({ where: { email } })) {
    throw new AppError("CONFLICT", `${email} already has an account.`, { field: "email" });
  }
  const id = crypto.randomUUID();
  const hash = await hashPassword(input.password);
  await db().$transaction(async (tx) => {
    await tx.user.create({
      data: {
        id,
        name: input.name,
        email,
        role: input.role,
        emailVerified: true,
        accounts: {
          create: { id: crypto.randomUUID(), accountId: id, providerId: "credential", password: hash },
        },
      },
    });
    await appendAuditEvent(tx, {
      actor,
      action: "user.create",
      target: { type: "user", id },
      after: { name: input.name, email, role: input.role },
    });
  });
  return { id };
}

export async function setUserRole(actor: Actor, input: { userId: string; role: TRole; reason: string }) {
  if (input.userId === actor.id) {
    throw new AppError("PRECONDITION_FAILED", "You cannot change your own role: ask another admin.", {
      field: "role",
    });
  }
  await db().$transaction(async (tx) => {
    await lockAdminChange(tx, actor);
    const user = await tx.user.findUnique({ where: { id: input.userId } });
    if (!user) throw new AppError("NOT_FOUND", "No such user.");
    if (user.role === input.role) return;
    await tx.user.update({ where: { id: user.id }, data: { role: input.role } });
    await appendAuditEvent(tx, {
      actor,
      action: "user.role.set",
      target: { type: "user", id: user.id },
      before: { email: user.email, role: user.role },
      after: { email: user.email, role: input.role },
      reason: input.reason,
    });
  });
}

/** Creates the demo accounts that are missing; existing ones are left as they are. */
export async function ensureDemoUsers(actor: Actor): Promise<void> {
  for (const user of DEMO_USERS) {
    if (await db().user.findUnique({ where: { email: user.email } })) continue;
    await createUser(actor, user);
  }
}

/**
 * A signed-in person changes their own name: bounded by ZPersonName and audited with before and
 * after, like every other change. (better-auth's own /update-user is disabled: it accepted any
 * length and left no trace.)
 */
export async function renameSelf(actor: Actor, input: { name: string }): Promise<{ name: string }> {
  if (!actor.id) throw new AppError("UNAUTHORIZED", "Sign in to change your name.");
  const userId = actor.id;
  return db().$transaction(async (tx) => {
    const user = await tx.user.findUnique({ where: { id: userId } });
    if (!user) throw new AppError("NOT_FOUND", "Your account no longer exists. Sign in again.");
    if (user.name === input.name) return { name: user.name };
    await tx.user.update({ where: { id: user.id }, data: { name: input.name } });
    await appendAuditEvent(tx, {
      actor,
      action: "user.name.set",
      target: { type: "user", id: user.id },
      before: { email: user.email, name: user.name },
      after: { email: user.email, name: input.name },
    });
    return { name: input.name };
  });
}
