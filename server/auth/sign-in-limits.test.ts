// Sign-in rate limits over real HTTP from real source addresses (127.0.0.x): X-Forwarded-For is
// believed only from configured proxies, and attempts are limited per address and per account.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { POST } from "../../app/api/auth/[...all]/route";
import { db } from "../db";
import { systemActor } from "../services/actor";
import { resetUserPassword } from "../services/users/account-access";
import { DEMO_USERS, ensureDemoUsers } from "../services/users/users";
import { startTestHttp, type TestHttp } from "../testing/auth-http";
import { useControlPlane } from "../testing/control-plane";
import { parseTrustedProxies, resolveClientAddress } from "./client-address";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let web: TestHttp;

const account = (role: string) => {
  const user = DEMO_USERS.find((u) => u.role === role);
  if (!user) throw new Error(role);
  return user;
};

function signIn(email: string, password: string, options: { from?: string; forwardedFor?: string } = {}) {
  return web.request("/api/auth/sign-in/email", {
    body: { email, password },
    from: options.from,
    headers: options.forwardedFor ? { "x-forwarded-for": options.forwardedFor } : {},
  });
}

beforeAll(async () => {
  control = await useControlPlane("auth_limits");
  await ensureDemoUsers(systemActor("test-setup"));
  web = await startTestHttp({ "/api/auth": POST }, process.env.BETTER_AUTH_URL ?? "");
});

afterAll(async () => {
  await web?.close();
  await control?.drop();
});

describe("client address", () => {
  it("is the socket's unless the socket is a trusted proxy; then the first untrusted hop from the right", () => {
    const none = null;
    const proxies = parseTrustedProxies("10.0.0.0/8, 127.0.0.1");
    expect(resolveClientAddress("::ffff:127.0.0.1", "6.6.6.6", none)).toBe("127.0.0.1");
    expect(resolveClientAddress("192.0.2.9", "6.6.6.6", proxies)).toBe("192.0.2.9");
    expect(resolveClientAddress("127.0.0.1", "6.6.6.6, 198.51.100.4, 10.1.2.3", proxies)).toBe(
      "198.51.100.4",
    );
    expect(resolveClientAddress("127.0.0.1", "garbage, 10.1.2.3", proxies)).toBe("10.1.2.3");
    expect(() => parseTrustedProxies("10.0.0.0/99")).toThrow(/SHARDSHIFT_TRUSTED_PROXIES/);
  });
});

// Each sign-in hashes a password (scrypt): give these room on a busy machine.
const SLOW = 180_000;

describe("sign-in rate limits", () => {
  it(
    "ignores a client's X-Forwarded-For: 25 wrong passwords from one socket get 429s; another address still signs in",
    async () => {
      web.trusted = null;
      const statuses: number[] = [];
      for (let i = 0; i < 25; i++) {
        const response = await signIn(account("admin").email, "wrong-password-123", {
          forwardedFor: `203.0.113.${i + 1}`,
        });
        statuses.push(response.status);
      }
      expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(10);
      expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(15);

      // Another address, another account: its own bucket, unaffected.
      const other = await signIn(account("operator").email, account("operator").password, {
        from: "127.0.0.2",
      });
      expect(other.status).toBe(200);
      // Even the attacked account signs in from elsewhere: limited attempts never reached its count.
      const owner = await signIn(account("admin").email, account("admin").password, { from: "127.0.0.3" });
      expect(owner.status).toBe(200);

      // Failed sign-ins are audited, one event a minute per address (the rest are counted).
      const failed = await db().auditEvent.findMany({ where: { action: "auth.sign_in.failed" } });
      expect(failed).toHaveLength(1);
      expect(failed[0]?.after).toMatchObject({ address: "127.0.0.1", status: 401 });
    },
    SLOW,
  );

  it(
    "behind a trusted proxy, varying client addresses still hit the per-account limit",
    async () => {
      web.trusted = parseTrustedProxies("127.0.0.1");
      const statuses: number[] = [];
      for (let i = 0; i < 25; i++) {
        const response = await signIn(account("viewer").email, "wrong-password-123", {
          forwardedFor: `198.51.100.${i + 1}`,
        });
        statuses.push(response.status);
      }
      expect(statuses.slice(0, 20).every((s) => s === 401)).toBe(true);
      expect(statuses.slice(20).every((s) => s === 429)).toBe(true);
      const throttled = await signIn(account("viewer").email, "wrong-password-123", {
        forwardedFor: "198.51.100.99",
      });
      expect(throttled.json()).toMatchObject({ code: "ACCOUNT_THROTTLED" });

      // Another account through the same proxy, from another client: fine.
      const other = await signIn(account("operator").email, account("operator").password, {
        forwardedFor: "198.51.100.200",
      });
      expect(other.status).toBe(200);
      // The addresses resolved through the proxy are what sessions record.
      const session = await db().session.findFirst({ orderBy: { createdAt: "desc" } });
      expect(session?.ipAddress).toBe("198.51.100.200");

      // An admin's password reset lifts the account's hold.
      const viewer = await db().user.findUniqueOrThrow({ where: { email: account("viewer").email } });
      const admin = await db().user.findUniqueOrThrow({ where: { email: account("admin").email } });
      await resetUserPassword(
        { id: admin.id, email: admin.email, role: "admin", requestId: "test-reset" },
        { userId: viewer.id, newPassword: "after-the-attack-1", reason: "under attack" },
      );
      const back = await signIn(viewer.email, "after-the-attack-1", { forwardedFor: "198.51.100.201" });
      expect(back.status).toBe(200);
    },
    SLOW,
  );
});
