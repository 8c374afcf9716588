// Refused calls are audited as their own kind, at most one event a minute per caller and kind,
// with the refusals in between counted and reported by the next event.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { useControlPlane } from "../../testing/control-plane";
import { createCaller } from "../../trpc/root";
import { systemActor } from "../actor";
import { DEMO_USERS, ensureDemoUsers } from "../users/users";
import { verifyAuditChain } from "./audit-log";

let control: Awaited<ReturnType<typeof useControlPlane>>;

beforeAll(async () => {
  control = await useControlPlane("refusals");
  await ensureDemoUsers(systemActor("test-setup"));
});

afterAll(async () => {
  await control?.drop();
});

const refusals = () =>
  db().auditEvent.findMany({ where: { action: "access.refused" }, orderBy: { seq: "asc" } });

describe("refusal audit", () => {
  it("20 concurrent forbidden calls: one event; the next window's event counts the other 19", async () => {
    const demo = DEMO_USERS.find((u) => u.role === "viewer");
    const user = await db().user.findUniqueOrThrow({ where: { email: demo?.email } });
    const viewer = createCaller({
      user: { id: user.id, email: user.email, name: user.name, role: "viewer" },
      requestId: "refusal-test",
      clientAddress: "192.0.2.10",
    });
    const attempts = await Promise.allSettled(
      Array.from({ length: 20 }, () => viewer.users.disable({ userId: user.id, reason: "try it" })),
    );
    expect(attempts.every((a) => a.status === "rejected")).toBe(true);
    const first = await refusals();
    expect(first).toHaveLength(1);
    expect(first[0]).toMatchObject({ actorEmail: user.email, role: "viewer", targetId: "users.disable" });
    expect(first[0]?.after).toMatchObject({ status: 403, address: "192.0.2.10", unrecordedBefore: 0 });

    // A minute later (moved back in the store), the next refusal is written and reports the rest.
    await control.pool.query(
      "update throttle_window set window_start = window_start - interval '61 seconds' where key like 'refusal:%'",
    );
    await expect(
      viewer.databases.register({ name: "x-db", kind: "shard", url: "postgresql://h/db" }),
    ).rejects.toMatchObject({
      code: "FORBIDDEN",
    });
    const second = await refusals();
    expect(second).toHaveLength(2);
    expect(second[1]?.after).toMatchObject({ unrecordedBefore: 19 });
    expect((await verifyAuditChain(db())).ok).toBe(true);
  });

  it("signed-out calls are recorded by address", async () => {
    const anonymous = createCaller({ user: null, requestId: "anon", clientAddress: "198.51.100.77" });
    await expect(anonymous.plans.list()).rejects.toMatchObject({ code: "UNAUTHORIZED" });
    const events = await refusals();
    expect(events.at(-1)).toMatchObject({
      actorEmail: "anonymous",
      role: "anonymous",
      targetId: "plans.list",
    });
    expect(events.at(-1)?.after).toMatchObject({ status: 401, address: "198.51.100.77" });
  });
});
