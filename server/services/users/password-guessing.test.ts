// A stolen session must not become a stolen password. changeOwnPassword checks the current
// password, and nothing limited how often: with a session cookie someone could guess the password
// as fast as the server hashes, with none of sign-in's limits. Its checks now count against the
// same per-account budget as sign-in attempts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SIGN_IN_PER_ACCOUNT } from "../../auth/auth";
import { db } from "../../db";
import { AppError } from "../../errors";
import { useControlPlane } from "../../testing/control-plane";
import { type Actor, systemActor } from "../actor";
import { changeOwnPassword } from "./account-access";
import { DEMO_USERS, ensureDemoUsers } from "./users";

let control: Awaited<ReturnType<typeof useControlPlane>>;

beforeAll(async () => {
  control = await useControlPlane("password_guessing");
  await ensureDemoUsers(systemActor("test-setup"));
});

afterAll(async () => {
  await control?.drop();
});

describe("guessing the current password through a session", () => {
  it("is limited per account like sign-in: past the budget even the right password is refused", async () => {
    const viewer = DEMO_USERS.find((u) => u.role === "viewer");
    if (!viewer) throw new Error("viewer");
    const user = await db().user.findUniqueOrThrow({ where: { email: viewer.email } });
    const actor: Actor = { id: user.id, email: user.email, role: "viewer", requestId: "guess" };
    const codes: string[] = [];
    for (let i = 0; i < SIGN_IN_PER_ACCOUNT.max + 3; i++) {
      const error = await changeOwnPassword(actor, {
        sessionId: undefined,
        currentPassword: `guess-number-${i}`,
        newPassword: "the-attackers-password",
      }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(AppError);
      codes.push((error as AppError).code);
    }
    expect(codes.slice(0, SIGN_IN_PER_ACCOUNT.max).every((c) => c === "BAD_REQUEST")).toBe(true);
    expect(codes.slice(SIGN_IN_PER_ACCOUNT.max).every((c) => c === "TOO_MANY_REQUESTS")).toBe(true);
    await expect(
      changeOwnPassword(actor, {
        sessionId: undefined,
        currentPassword: viewer.password,
        newPassword: "the-attackers-password",
      }),
    ).rejects.toThrow(/Too many/);
  }, 120_000);
});
