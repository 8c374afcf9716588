// Text PostgreSQL cannot store — a NUL character, a lone UTF-16 surrogate — passed zod and failed in
// the database as a 500 (Prisma's P2039 / P2007, SQLSTATE 22021 / 22P02 / 22P05): a person's own
// name, or a URL tested by an admin (its audit event). Such a value is the caller's mistake: 400,
// nothing changed, nothing internal in the message.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../db";
import { systemActor } from "../services/actor";
import { DEMO_USERS, ensureDemoUsers } from "../services/users/users";
import { useControlPlane } from "../testing/control-plane";
import { createCaller } from "./root";

let control: Awaited<ReturnType<typeof useControlPlane>>;

beforeAll(async () => {
  control = await useControlPlane("bad_text");
  await ensureDemoUsers(systemActor("test-setup"));
});

afterAll(async () => {
  await control?.drop();
});

async function refusal(call: Promise<unknown>) {
  const error = await call.then(
    () => null,
    (e: unknown) => e as { code?: string; message?: string },
  );
  expect(error).not.toBeNull();
  return error as { code?: string; message?: string };
}

describe("text the database cannot store", () => {
  it("is refused as the caller's mistake (400), and changes nothing", async () => {
    const viewer = await db().user.findUniqueOrThrow({ where: { email: DEMO_USERS[2]?.email } });
    const admin = await db().user.findUniqueOrThrow({ where: { email: DEMO_USERS[0]?.email } });
    const as = (user: typeof viewer, role: "viewer" | "admin") =>
      createCaller({
        user: { id: user.id, email: user.email, name: user.name, role },
        requestId: "bad-text",
      });
    const eventsBefore = await db().auditEvent.count();
    for (const name of ["Vera\u0000Viewer", "Vera \ud800 Viewer"]) {
      const error = await refusal(as(viewer, "viewer").users.renameSelf({ name }));
      expect(error.code, name).toBe("BAD_REQUEST");
      expect(error.message).not.toMatch(/prisma|invocation|\.ts|\.js/i);
    }
    const error = await refusal(
      as(admin, "admin").databases.testConnection({ url: "postgresql://u:p@127.0.0.1:1/db\u0000x" }),
    );
    expect(error.code).toBe("BAD_REQUEST");
    expect((await db().user.findUniqueOrThrow({ where: { id: viewer.id } })).name).toBe(viewer.name);
    expect(await db().auditEvent.count()).toBe(eventsBefore);
  });
});
