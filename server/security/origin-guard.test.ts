// Cross-site request forgery over real HTTP against the app's route handlers: a state change from a
// foreign origin is refused with 403 before anything runs, and audited; our own origin and
// non-browser clients go through.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as authRoute from "../../app/api/auth/[...all]/route";
import * as trpcRoute from "../../app/api/trpc/[trpc]/route";
import { db } from "../db";
import { systemActor } from "../services/actor";
import { DEMO_USERS, ensureDemoUsers } from "../services/users/users";
import { cookieHeader, startTestHttp, type TestHttp } from "../testing/auth-http";
import { useControlPlane } from "../testing/control-plane";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let web: TestHttp;
let adminCookie = "";
let viewerId = "";
const OWN_ORIGIN = "http://localhost:3999"; // BETTER_AUTH_URL in server/testing/control-plane.ts

beforeAll(async () => {
  control = await useControlPlane("origin_guard");
  await ensureDemoUsers(systemActor("test-setup"));
  web = await startTestHttp(
    {
      "/api/auth": authRoute.POST,
      "/api/trpc": (req) => (req.method === "GET" ? trpcRoute.GET(req) : trpcRoute.POST(req)),
    },
    process.env.BETTER_AUTH_URL ?? "",
  );
  const admin = DEMO_USERS.find((u) => u.role === "admin");
  const signIn = await web.request("/api/auth/sign-in/email", {
    body: { email: admin?.email, password: admin?.password },
  });
  expect(signIn.status).toBe(200);
  adminCookie = cookieHeader(signIn.headers["set-cookie"]);
  viewerId = (await db().user.findUniqueOrThrow({ where: { email: "viewer@shardshift.local" } })).id;
});

afterAll(async () => {
  await web?.close();
  await control?.drop();
});

function disableViewer(headers: Record<string, string>) {
  return web.request("/api/trpc/users.disable", {
    body: { json: { userId: viewerId, reason: "forged request" } },
    headers: { cookie: adminCookie, ...headers },
  });
}

const viewerDisabled = async () =>
  (await db().user.findUniqueOrThrow({ where: { id: viewerId } })).disabledAt !== null;

describe("origin guard", () => {
  it("refuses a tRPC mutation from another origin with 403, changes nothing, and audits it", async () => {
    const forged = await disableViewer({ origin: "https://evil.example", "sec-fetch-site": "cross-site" });
    expect(forged.status).toBe(403);
    expect(forged.body).toMatch(/only from the Shardshift dashboard itself.*Nothing was changed/);
    const noOrigin = await disableViewer({ "sec-fetch-site": "cross-site" });
    expect(noOrigin.status).toBe(403);
    const nullOrigin = await disableViewer({ origin: "null" });
    expect(nullOrigin.status).toBe(403);
    expect(await viewerDisabled()).toBe(false);
    const [event] = await db().auditEvent.findMany({ where: { action: "access.refused" } });
    expect(event).toMatchObject({
      actorEmail: "admin@shardshift.local",
      targetId: "/api/trpc/users.disable",
    });
    expect(event?.after).toMatchObject({ status: 403 });
    expect(String((event?.after as { reason?: string } | null)?.reason)).toMatch(/foreign origin/);
  });

  it("refuses better-auth's state changes from another origin too", async () => {
    const signOut = await web.request("/api/auth/sign-out", {
      body: {},
      headers: { cookie: adminCookie, origin: "https://evil.example" },
    });
    expect(signOut.status).toBe(403);
  });

  it("lets the dashboard's own origin and non-browser clients through", async () => {
    const own = await disableViewer({ origin: OWN_ORIGIN, "sec-fetch-site": "same-origin" });
    expect(own.status).toBe(200);
    expect(await viewerDisabled()).toBe(true);
    const script = await web.request("/api/trpc/users.enable", {
      body: { json: { userId: viewerId, reason: "scripted" } },
      headers: { cookie: adminCookie },
    });
    expect(script.status).toBe(200);
    expect(await viewerDisabled()).toBe(false);
    // Reads are never refused for their origin.
    const read = await web.request("/api/trpc/users.me", {
      headers: { cookie: adminCookie, origin: "https://evil.example" },
    });
    expect(read.status).toBe(200);
  });

  it("every route handler that accepts a state-changing method is wrapped by the guard", () => {
    const root = path.resolve(import.meta.dirname, "../../app");
    const routes = fs
      .readdirSync(root, { recursive: true, encoding: "utf8" })
      .filter((file) => file.endsWith("route.ts"))
      .map((file) => ({ file, text: fs.readFileSync(path.join(root, file), "utf8") }));
    expect(routes.length).toBeGreaterThan(0);
    for (const route of routes) {
      if (!/\b(POST|PUT|PATCH|DELETE)\b/.test(route.text)) continue;
      expect(
        /guardStateChanges|handleAuthRequest/.test(route.text),
        `${route.file} changes state without guardStateChanges`,
      ).toBe(true);
    }
  });
});
