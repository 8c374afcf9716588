// better-auth's own routes that answer over HTTP besides sign-in and sign-out, tried with a valid
// session. /verify-password is declared "server" scope but answered over HTTP: with a stolen session
// cookie it told right from wrong passwords without the per-account sign-in limit and without a
// trace in the audit log. /revoke-sessions and /revoke-other-sessions ended sessions unaudited
// (users.signOutEverywhere and users.changeOwnPassword do it audited).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { POST } from "../../app/api/auth/[...all]/route";
import { db } from "../db";
import { systemActor } from "../services/actor";
import { DEMO_USERS, ensureDemoUsers } from "../services/users/users";
import { cookieHeader, startTestHttp, type TestHttp } from "../testing/auth-http";
import { useControlPlane } from "../testing/control-plane";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let web: TestHttp;

beforeAll(async () => {
  control = await useControlPlane("auth_endpoints");
  await ensureDemoUsers(systemActor("test-setup"));
  web = await startTestHttp({ "/api/auth": POST }, process.env.BETTER_AUTH_URL ?? "");
});

afterAll(async () => {
  await web?.close();
  await control?.drop();
});

describe("better-auth routes a signed-in person can call", () => {
  it("offer no password oracle and no unaudited session revocation", async () => {
    const viewer = DEMO_USERS.find((u) => u.role === "viewer");
    if (!viewer) throw new Error("viewer");
    const signIn = async (from: string) => {
      const response = await web.request("/api/auth/sign-in/email", {
        body: { email: viewer.email, password: viewer.password },
        from,
      });
      expect(response.status).toBe(200);
      return cookieHeader(response.headers["set-cookie"]);
    };
    const cookie = await signIn("127.0.0.30");
    await signIn("127.0.0.31");
    for (const password of ["wrong-password-1", viewer.password]) {
      const response = await web.request("/api/auth/verify-password", {
        body: { password },
        headers: { cookie },
        from: "127.0.0.32",
      });
      expect(response.status).toBe(404);
    }
    for (const path of ["/api/auth/revoke-other-sessions", "/api/auth/revoke-sessions"]) {
      const response = await web.request(path, { body: {}, headers: { cookie }, from: "127.0.0.32" });
      expect(response.status).toBe(404);
    }
    const user = await db().user.findUniqueOrThrow({ where: { email: viewer.email } });
    expect(await db().session.count({ where: { userId: user.id } })).toBe(2);
  });
});
