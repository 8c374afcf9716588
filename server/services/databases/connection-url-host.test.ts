// A connection URL's host is what the dashboard shows and audits, and what the driver must reach.
// pg decodes a percent-encoded host and WHATWG URL does not: "%2Ftmp" was shown as a host name and
// connected to the Unix socket in /tmp (where local trust or peer authentication may let any user
// in, whatever password the URL carries), and "local%68ost" was shown as one host and reached another.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { ZRegisterDatabaseInput } from "../../schemas/database";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import type { Actor } from "../actor";
import { testConnection } from "./databases";

const admin: Actor = { id: null, email: "admin@test", role: "admin", requestId: "url-host-test" };
let control: Awaited<ReturnType<typeof useControlPlane>>;
let target: TestDatabase;

function withHost(url: string, host: string, credentials?: string): string {
  const u = new URL(url);
  const auth = credentials ?? `${u.username}:${u.password}`;
  return `postgresql://${auth}@${host}:${u.port}${u.pathname}`;
}

beforeAll(async () => {
  control = await useControlPlane("urlhost_cp");
  target = await createTestDatabase("urlhost_target");
});

afterAll(async () => {
  await control?.drop();
  await target?.drop();
});

describe("a percent-encoded host", () => {
  const cases = () => [
    withHost(target.url, "%2Ftmp", "postgres:not-the-password"),
    withHost(target.url, "%2ftmp"),
    withHost(target.url, "local%68ost"),
  ];

  it("is refused by the form's schema", () => {
    for (const url of cases()) {
      const parsed = ZRegisterDatabaseInput.safeParse({ name: "sneaky", kind: "shard", url });
      expect(parsed.success, url).toBe(false);
      expect(JSON.stringify(parsed.error?.issues), url).toMatch(/percent-encoded/);
    }
  });

  it("is never connected to by a connection test", async () => {
    for (const url of cases()) {
      const report = await testConnection(admin, { url });
      expect(report.ok, `${url}: ${report.message}`).toBe(false);
      expect(report.identity, url).toBeUndefined();
      expect(report.message, url).toMatch(/percent-encoded/);
    }
  });
});

describe("a control character in a URL", () => {
  it("is refused before anything connects (a NUL reached the probe, then broke its audit event)", async () => {
    for (const url of [
      withHost(target.url, "127.0.0.1").replace(/\/([^/]*)$/, "/$1\u0000x"),
      withHost(target.url, "127.0.0.1").replace(/\/([^/]*)$/, "/$1%00x"),
    ]) {
      const parsed = ZRegisterDatabaseInput.safeParse({ name: "sneaky", kind: "shard", url });
      expect(parsed.success, url).toBe(false);
      const before = await db().auditEvent.count();
      await expect(testConnection(admin, { url })).rejects.toThrow(/control character/);
      expect(await db().auditEvent.count()).toBe(before);
    }
  });
});
