// The audit export is a GET any viewer may repeat (and a link may trigger), and every export signed
// a new digest: a viewer in a loop wrote digests without bound, and verification reads every
// digest. An export now reuses the newest digest when it already anchors the head it exports.
import crypto from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GET } from "../../../app/api/audit/export/route";
import { POST } from "../../../app/api/auth/[...all]/route";
import { db } from "../../db";
import { cookieHeader, startTestHttp, type TestHttp } from "../../testing/auth-http";
import { useControlPlane } from "../../testing/control-plane";
import { systemActor } from "../actor";
import { DEMO_USERS, ensureDemoUsers } from "../users/users";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let web: TestHttp;

beforeAll(async () => {
  process.env.SHARDSHIFT_AUDIT_KEY = crypto.randomBytes(32).toString("base64");
  control = await useControlPlane("audit_export_digests");
  await ensureDemoUsers(systemActor("test-setup"));
  web = await startTestHttp({ "/api/auth": POST }, process.env.BETTER_AUTH_URL ?? "");
});

afterAll(async () => {
  await web?.close();
  await control?.drop();
});

describe("exports and digests", () => {
  it("20 exports of an unchanged head sign one digest, named by every export", async () => {
    const viewer = DEMO_USERS.find((u) => u.role === "viewer");
    if (!viewer) throw new Error("viewer");
    const signIn = await web.request("/api/auth/sign-in/email", {
      body: { email: viewer.email, password: viewer.password },
      from: "127.0.0.7",
    });
    expect(signIn.status).toBe(200);
    const cookie = cookieHeader(signIn.headers["set-cookie"]);
    const anchors = new Set<string | null>();
    for (let i = 0; i < 20; i++) {
      const format = i % 2 ? "json" : "digests";
      const response = await GET(
        new Request(`${process.env.BETTER_AUTH_URL}/api/audit/export?format=${format}`, {
          headers: { cookie },
        }),
      );
      expect(response.status).toBe(200);
      await response.text();
      anchors.add(response.headers.get("x-shardshift-audit-digest"));
    }
    expect(await db().auditDigest.count()).toBe(1);
    expect([...anchors]).toHaveLength(1);
    expect([...anchors][0]).toMatch(/^\d+:\d+:[0-9a-f]{64}$/);
  });
});
