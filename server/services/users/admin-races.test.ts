// Admins acting on each other at the same moment, on a real server. Role changes read the row
// without a lock, so ten concurrent ones each audited "before: viewer" (the audit disagreed with
// the history it records); and two admins disabling (or demoting) each other at once both
// succeeded, leaving no admin who could sign in. Admin changes are now serialized and an actor who
// lost the admin role or was disabled meanwhile is refused.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { AppError } from "../../errors";
import type { TRole } from "../../schemas/user";
import { useControlPlane } from "../../testing/control-plane";
import { type Actor, systemActor } from "../actor";
import { disableUser } from "./account-access";
import { createUser, DEMO_USERS, ensureDemoUsers, setUserRole } from "./users";

let control: Awaited<ReturnType<typeof useControlPlane>>;

async function actorFor(email: string): Promise<Actor> {
  const user = await db().user.findUniqueOrThrow({ where: { email } });
  return { id: user.id, email: user.email, role: "admin", requestId: `test-${email}` };
}

beforeAll(async () => {
  control = await useControlPlane("admin_races");
  await ensureDemoUsers(systemActor("test-setup"));
});

afterAll(async () => {
  await control?.drop();
});

describe("admins acting at once", () => {
  it("10 concurrent role changes: the audit's before/after chain matches the stored role", async () => {
    const admin = await actorFor("admin@shardshift.local");
    const viewer = await db().user.findUniqueOrThrow({ where: { email: "viewer@shardshift.local" } });
    const roles: TRole[] = [
      "operator",
      "admin",
      "operator",
      "viewer",
      "admin",
      "operator",
      "admin",
      "viewer",
      "operator",
      "admin",
    ];
    await Promise.allSettled(
      roles.map((role, i) =>
        setUserRole({ ...admin, requestId: `role-${i}` }, { userId: viewer.id, role, reason: `race ${i}` }),
      ),
    );
    const events = await db().auditEvent.findMany({
      where: { action: "user.role.set", targetId: viewer.id },
      orderBy: { seq: "asc" },
    });
    expect(events.length).toBeGreaterThan(0);
    let current = "viewer";
    for (const event of events) {
      expect((event.before as { role: string }).role).toBe(current);
      current = (event.after as { role: string }).role;
    }
    const stored = await db().user.findUniqueOrThrow({ where: { id: viewer.id } });
    expect(stored.role).toBe(current);
  });

  it("two admins disabling each other at once: one wins, an admin remains", async () => {
    await createUser(systemActor("test-setup"), {
      name: "Second Admin",
      email: "admin2@shardshift.local",
      role: "admin",
      password: "second-admin-password",
    });
    const one = await actorFor("admin@shardshift.local");
    const two = await actorFor("admin2@shardshift.local");
    const results = await Promise.allSettled([
      disableUser(one, { userId: two.id as string, reason: "you first" }),
      disableUser(two, { userId: one.id as string, reason: "no, you" }),
    ]);
    const refused = results.filter((r) => r.status === "rejected");
    expect(refused).toHaveLength(1);
    expect((refused[0] as PromiseRejectedResult).reason).toBeInstanceOf(AppError);
    const admins = await db().user.count({
      where: { id: { in: [one.id as string, two.id as string] }, role: "admin", disabledAt: null },
    });
    expect(admins).toBe(1);
    expect(await db().auditEvent.count({ where: { action: "user.disable" } })).toBe(1);
  });

  it("a disabled admin's request in flight changes nothing", async () => {
    const disabled = await db().user.findFirstOrThrow({ where: { disabledAt: { not: null } } });
    const operator = await db().user.findUniqueOrThrow({ where: { email: DEMO_USERS[1]?.email } });
    const stale = await actorFor(disabled.email);
    await expect(
      setUserRole(stale, { userId: operator.id, role: "admin", reason: "still here" }),
    ).rejects.toThrow(/disabled|no longer/);
    expect((await db().user.findUniqueOrThrow({ where: { id: operator.id } })).role).toBe("operator");
  });
});
