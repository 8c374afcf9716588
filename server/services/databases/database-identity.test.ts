// One database under two names (issue 10, finding 4), on a real server: databases are told apart by
// what the server reports (system identifier + database oid), not by the URL's host or by
// registration ids. Legacy under a second host alias and the control plane's own database are
// refused by name; a URL's query parameters cannot redirect the connection; a plan whose source and
// shards overlap, or that includes the control plane, is refused, and so is a movement start on
// databases registered before identities existed.
import crypto from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { AppError } from "../../errors";
import { ZRegisterDatabaseInput } from "../../schemas/database";
import { encryptSecret } from "../../security/secrets";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import type { Actor } from "../actor";
import { startDataMovement } from "../movement/movement";
import { createPlan, transitionPlan } from "../plans/plans";
import { registerDatabase, testConnection } from "./databases";

const admin: Actor = { id: null, email: "admin@test", role: "admin", requestId: "identity-test" };
let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard1: TestDatabase;
let shard2: TestDatabase;
const ids = { legacy: "", shard1: "", shard2: "" };

/** 127.0.0.1 ↔ localhost: the same server under another name. */
function alias(url: string): string {
  const u = new URL(url);
  u.hostname = u.hostname === "localhost" ? "127.0.0.1" : "localhost";
  return u.toString();
}

/** A registration as it was stored before identities were read: no identity, no checks. */
async function legacyStyleRow(name: string, kind: "legacy" | "shard", url: string) {
  const u = new URL(url);
  return db().database.create({
    data: {
      name,
      kind,
      host: u.hostname,
      port: Number(u.port),
      databaseName: u.pathname.slice(1),
      username: u.username,
      urlCiphertext: encryptSecret(url, control.secretKey),
    },
  });
}

async function refusal(promise: Promise<unknown>): Promise<AppError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AppError);
  return error as AppError;
}

beforeAll(async () => {
  control = await useControlPlane("ident_cp");
  legacy = await createTestDatabase("ident_legacy");
  shard1 = await createTestDatabase("ident_shard1");
  shard2 = await createTestDatabase("ident_shard2");
  await legacy.pool.query(`
    create table tenants (tenant_id bigint primary key, name text not null);
    create table orders (tenant_id bigint not null references tenants, id bigint, primary key (tenant_id, id));
    insert into tenants values (1, 'one'), (2, 'two');
    insert into orders values (1, 1), (2, 1);`);
  ids.legacy = (await registerDatabase(admin, { name: "legacy", kind: "legacy", url: legacy.url })).id;
  ids.shard1 = (await registerDatabase(admin, { name: "shard-1", kind: "shard", url: shard1.url })).id;
  ids.shard2 = (await registerDatabase(admin, { name: "shard-2", kind: "shard", url: shard2.url })).id;
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard1?.drop();
  await shard2?.drop();
});

describe("registration", () => {
  it("records what the server is and where it was reached, and audits it", async () => {
    const row = await db().database.findUniqueOrThrow({ where: { id: ids.legacy } });
    expect(row.systemIdentifier).toMatch(/^-?\d+$/);
    expect(row.databaseOid).toMatch(/^\d+$/);
    expect(row.serverAddress).toMatch(/^(127\.0\.0\.1|\[::1\]):\d+$/);
    const event = await db().auditEvent.findFirstOrThrow({
      where: { action: "database.register", targetId: ids.legacy },
    });
    expect(event.after).toMatchObject({
      systemIdentifier: row.systemIdentifier,
      serverAddress: row.serverAddress,
    });
  });

  it("refuses legacy again under another host alias, naming the database it really is", async () => {
    const events = await db().auditEvent.count();
    const row = await db().database.findUniqueOrThrow({ where: { id: ids.legacy } });
    const error = await refusal(
      registerDatabase(admin, { name: "legacy-alias", kind: "shard", url: alias(legacy.url) }),
    );
    expect(error.code).toBe("CONFLICT");
    expect(error.field).toBe("url");
    expect(error.message).toContain(
      `This is the legacy database "${legacy.name}", already registered as "legacy" (system ${row.systemIdentifier}/oid ${row.databaseOid}`,
    );
    expect(error.message).toMatch(/Nothing was registered\.$/);
    expect(await db().database.findUnique({ where: { name: "legacy-alias" } })).toBeNull();
    expect(await db().auditEvent.count()).toBe(events);
  });

  it("refuses the control plane's own database as a shard or as legacy, under any name", async () => {
    for (const [name, kind, url] of [
      ["cp-shard", "shard", control.url],
      ["cp-legacy", "legacy", alias(control.url)],
    ] as const) {
      const error = await refusal(registerDatabase(admin, { name, kind, url }));
      expect(error.code).toBe("CONFLICT");
      expect(error.message).toMatch(
        new RegExp(
          `This is Shardshift's own control-plane database "${control.name}" \\(system \\d+/oid \\d+ at `,
        ),
      );
    }
    expect(await db().database.count()).toBe(3);
  });

  it("lets one of ten concurrent registrations of one database win", async () => {
    const extra = await createTestDatabase("ident_race");
    try {
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) =>
          registerDatabase(admin, {
            name: `race-${i}`,
            kind: "shard",
            url: i % 2 ? alias(extra.url) : extra.url,
          }),
        ),
      );
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      for (const r of results) {
        if (r.status === "rejected") expect((r.reason as AppError).code).toBe("CONFLICT");
      }
      expect(await db().database.count({ where: { name: { startsWith: "race-" } } })).toBe(1);
      expect(
        await db().auditEvent.count({
          where: { action: "database.register", after: { path: ["name"], string_starts_with: "race-" } },
        }),
      ).toBe(1);
      await db().database.deleteMany({ where: { name: { startsWith: "race-" } } });
    } finally {
      await extra.drop();
    }
  });

  it("refuses URL parameters that would connect somewhere other than what is shown", async () => {
    // Shown as an unroutable host; ?host=&port= would make the driver connect to the test server.
    const real = new URL(shard2.url);
    const disguised = new URL(shard2.url);
    disguised.hostname = "10.255.255.1";
    disguised.port = "5432";
    disguised.search = `?host=${real.hostname}&port=${real.port}`;
    const parsed = ZRegisterDatabaseInput.safeParse({
      name: "disguised",
      kind: "shard",
      url: disguised.toString(),
    });
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]?.message).toMatch(
      /"host", "port" would change where or how Shardshift connects/,
    );
    // The service refuses it too, whatever the caller validated.
    const error = await refusal(
      registerDatabase(admin, { name: "disguised", kind: "shard", url: disguised.toString() }),
    );
    expect(error.message).toMatch(/"host", "port" would change where/);
    for (const param of [
      "options=-c%20search_path%3Dx",
      "user=postgres",
      "sslkey=/etc/shadow",
      "dbname=postgres",
    ]) {
      expect(
        ZRegisterDatabaseInput.safeParse({ name: "pp", kind: "shard", url: `${shard2.url}?${param}` })
          .success,
      ).toBe(false);
    }
    expect(
      ZRegisterDatabaseInput.safeParse({ name: "pp", kind: "shard", url: `${shard2.url}?sslmode=disable` })
        .success,
    ).toBe(true);
    expect(await db().database.findUnique({ where: { name: "disguised" } })).toBeNull();
  });

  it("says what to grant when the user may not read the server's identity", async () => {
    const locked = await createTestDatabase("ident_locked");
    const role = `ident_${crypto.randomBytes(4).toString("hex")}`;
    try {
      await locked.pool.query(`
        create role ${role} login password 'locked-pw';
        revoke execute on function pg_control_system() from public;`);
      const url = new URL(locked.url);
      url.username = role;
      url.password = "locked-pw";
      const error = await refusal(
        registerDatabase(admin, { name: "locked", kind: "shard", url: url.toString() }),
      );
      expect(error.message).toMatch(
        /may not read pg_control_system\(\).*GRANT pg_monitor.*Nothing was registered/,
      );
    } finally {
      await locked.drop();
      await legacy.pool.query(`drop role if exists ${role}`);
    }
  });

  it("audits a connection test with the address actually connected to", async () => {
    const report = await testConnection(admin, { url: alias(legacy.url) });
    expect(report.ok).toBe(true);
    expect(report.identity?.databaseName).toBe(legacy.name);
    expect(report.warnings.join(" ")).toMatch(/already registered as "legacy"/);
    const event = await db().auditEvent.findFirstOrThrow({
      where: { action: "database.connection.test" },
      orderBy: { seq: "desc" },
    });
    expect(event.after).toMatchObject({
      shown: { host: "localhost", databaseName: legacy.name },
      ok: true,
      connectedTo: { databaseName: legacy.name, serverAddress: report.identity?.serverAddress },
    });
    expect(JSON.stringify(event.after)).not.toContain(decodeURIComponent(new URL(legacy.url).password));
  });
});

describe("first identification of a database registered before identities", () => {
  const operator: Actor = { id: "op-2", email: "op2@test", role: "operator", requestId: "identity-first" };

  it("is recorded and audited once under 10 concurrent tests and 10 concurrent plans", async () => {
    const extra = await createTestDatabase("ident_first");
    try {
      await extra.pool.query("create table tenants (tenant_id bigint primary key)");
      const tested = await legacyStyleRow("tested-old", "shard", extra.url);
      const reports = await Promise.all(
        Array.from({ length: 10 }, () => testConnection(admin, { databaseId: tested.id })),
      );
      expect(reports.every((r) => r.ok)).toBe(true);
      const tests = await db().auditEvent.findMany({
        where: { action: "database.connection.test", targetId: tested.id },
      });
      expect(tests).toHaveLength(10);
      expect(tests.filter((e) => (e.after as { identityRecorded?: boolean }).identityRecorded)).toHaveLength(
        1,
      );
      const row = await db().database.findUniqueOrThrow({ where: { id: tested.id } });
      expect(row.systemIdentifier).toBe(reports[0]?.identity?.systemIdentifier);
      expect(row.databaseOid).toBe(reports[0]?.identity?.databaseOid);
      await db().database.delete({ where: { id: tested.id } });

      const planned = await legacyStyleRow("planned-old", "shard", extra.url);
      const plans = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) =>
          createPlan(operator, {
            name: `first-${i}`,
            sourceDatabaseId: ids.legacy,
            shardDatabaseIds: [planned.id],
            shardKeyColumn: "tenant_id",
          }),
        ),
      );
      expect(plans.filter((p) => p.status === "fulfilled")).toHaveLength(10);
      expect(
        await db().auditEvent.count({ where: { action: "database.identify", targetId: planned.id } }),
      ).toBe(1);
      expect((await db().database.findUniqueOrThrow({ where: { id: planned.id } })).databaseOid).toBe(
        row.databaseOid,
      );
      await db().plan.deleteMany({ where: { name: { startsWith: "first-" } } });
      await db().database.delete({ where: { id: planned.id } });
    } finally {
      await extra.drop();
    }
  });
});

describe("plans", () => {
  const operator: Actor = { id: "op-1", email: "op@test", role: "operator", requestId: "identity-plan" };

  it("refuses a plan whose shard is legacy registered before identities existed", async () => {
    const old = await legacyStyleRow("legacy-old-alias", "shard", alias(legacy.url));
    try {
      const error = await refusal(
        createPlan(operator, {
          name: "overlap",
          sourceDatabaseId: ids.legacy,
          shardDatabaseIds: [ids.shard1, old.id],
          shardKeyColumn: "tenant_id",
        }),
      );
      expect(error.code).toBe("CONFLICT");
      expect(error.field).toBe("shardDatabaseIds");
      expect(error.message).toMatch(
        new RegExp(
          `"legacy-old-alias" cannot be in this plan\\. It is the same database as "legacy" .*this is the legacy database "${legacy.name}" \\(registered as "legacy" and "legacy-old-alias"\\), system \\d+/oid \\d+`,
        ),
      );
      expect(await db().plan.count()).toBe(0);
    } finally {
      await db().database.delete({ where: { id: old.id } });
    }
  });

  it("refuses a plan that includes the control plane, as legacy or as a shard", async () => {
    const asShard = await legacyStyleRow("cp-old-shard", "shard", control.url);
    const asLegacy = await legacyStyleRow("cp-old-legacy", "legacy", alias(control.url));
    try {
      for (const input of [
        { sourceDatabaseId: ids.legacy, shardDatabaseIds: [asShard.id] },
        { sourceDatabaseId: asLegacy.id, shardDatabaseIds: [ids.shard1] },
      ]) {
        const error = await refusal(
          createPlan(operator, { name: "cp", shardKeyColumn: "tenant_id", ...input }),
        );
        expect(error.message).toMatch(/This is Shardshift's own control-plane database/);
      }
      expect(await db().plan.count()).toBe(0);
    } finally {
      await db().database.deleteMany({ where: { id: { in: [asShard.id, asLegacy.id] } } });
    }
  });

  it("refuses to start a movement into a shard another plan's movement fills under another registration", async () => {
    let planA = await createPlan(operator, {
      name: "plan-a",
      sourceDatabaseId: ids.legacy,
      shardDatabaseIds: [ids.shard1],
      shardKeyColumn: "tenant_id",
    });
    for (const reason of ["key analysed", "router deployed"]) {
      planA = await transitionPlan(operator, {
        planId: planA.id,
        expectedVersion: planA.version,
        event: "advance",
        reason,
      });
    }
    await startDataMovement(operator, { planId: planA.id, reason: "go" });
    // Plan B was created before identities were read: its shard is shard-1 under an older registration.
    const oldShard = await legacyStyleRow("shard-1-old", "shard", alias(shard1.url));
    const planB = await db().plan.create({
      data: {
        name: "plan-b",
        sourceDatabaseId: ids.legacy,
        shardKeyColumn: "tenant_id",
        phase: "two_way_cdc",
        settings: {},
        createdById: "op-1",
        shards: { create: [{ ordinal: 0, databaseId: oldShard.id }] },
      },
    });
    // Before identities, B's "empty the shard tables first" would truncate plan A's copy on shard-1.
    const error = await refusal(
      startDataMovement(operator, { planId: planB.id, reason: "go", resetShards: true }),
    );
    expect(error.code).toBe("CONFLICT");
    expect(error.message).toMatch(
      /"shard-1-old" cannot be in this plan\. This is the shard database ".*", already registered as "shard-1"/,
    );
    expect(await db().dataMovement.findUnique({ where: { planId: planB.id } })).toBeNull();
  });
});
