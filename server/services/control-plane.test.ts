// The control plane against a real PostgreSQL server: topology with encrypted secrets, plans and
// their state machine, roles enforced by the API, and the audit chain including tamper detection.
import { TRPCError } from "@trpc/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../db";
import { AppError } from "../errors";
import { DEFAULT_PLAN_SETTINGS } from "../schemas/plan";
import { useControlPlane } from "../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../testing/databases";
import { createCaller } from "../trpc/root";
import { type Actor, systemActor } from "./actor";
import { appendAuditEvent, verifyAuditChain } from "./audit/audit-log";
import { connectionUrlFor, registerDatabase, removeDatabase } from "./databases/databases";
import { createPlan, getPlan, transitionPlan, updatePlanSettings } from "./plans/plans";
import { DEMO_USERS, ensureDemoUsers } from "./users/users";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;

function callerFor(role: "viewer" | "operator" | "admin") {
  const demo = DEMO_USERS.find((u) => u.role === role);
  if (!demo) throw new Error(role);
  return db()
    .user.findUniqueOrThrow({ where: { email: demo.email } })
    .then((user) =>
      createCaller({
        user: { id: user.id, email: user.email, name: user.name, role },
        requestId: `test-${role}`,
      }),
    );
}

async function auditCount() {
  return db().auditEvent.count();
}

beforeAll(async () => {
  control = await useControlPlane("cp_services");
  legacy = await createTestDatabase("cp_legacy");
  shard = await createTestDatabase("cp_shard");
  await legacy.pool.query(`
    create table tenants (tenant_id bigint primary key, name text not null);
    create table orders (tenant_id bigint not null references tenants, id bigserial, total numeric, primary key (tenant_id, id));
    create table currencies (code char(3) primary key);`);
  await ensureDemoUsers(systemActor("test-setup"));
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

describe("topology", () => {
  const admin: Actor = { id: null, email: "admin@test", role: "admin", requestId: "r1" };

  it("stores connection URLs only encrypted, and never audits them in clear", async () => {
    const password = decodeURIComponent(new URL(legacy.url).password);
    expect(password.length).toBeGreaterThan(8);
    const view = await registerDatabase(admin, { name: "legacy", kind: "legacy", url: legacy.url });
    expect(view).not.toHaveProperty("urlCiphertext");
    const row = await db().database.findUniqueOrThrow({ where: { id: view.id } });
    expect(row.urlCiphertext).not.toContain(password);
    expect(row.urlCiphertext).not.toContain(legacy.name);
    expect(await connectionUrlFor(view.id)).toBe(legacy.url);
    await registerDatabase(admin, { name: "shard-1", kind: "shard", url: shard.url });
    const { rows } = await control.pool.query(`select before::text || after::text as body from audit_event`);
    for (const r of rows) expect(r.body ?? "").not.toContain(password);
  });

  it("refuses an unreachable database with a clear message and changes nothing", async () => {
    const before = await auditCount();
    const unreachable = legacy.url.replace(/:(\d+)\//, ":1/");
    const error = await registerDatabase(admin, { name: "nowhere", kind: "shard", url: unreachable }).catch(
      (e) => e,
    );
    expect(error).toBeInstanceOf(AppError);
    expect(error.field).toBe("url");
    expect(error.message).toMatch(/Nothing is listening at 127\.0\.0\.1:1.*Nothing was registered/);
    expect(await db().database.findUnique({ where: { name: "nowhere" } })).toBeNull();
    expect(await auditCount()).toBe(before);
  });

  it("refuses a wrong database name with a message that names it", async () => {
    const wrong = legacy.url.replace(legacy.name, "no_such_db");
    const error = await registerDatabase(admin, { name: "wrong", kind: "shard", url: wrong }).catch((e) => e);
    expect(error.message).toMatch(/Database "no_such_db" does not exist/);
  });
});

describe("plans", () => {
  const operator: Actor = { id: "op-1", email: "op@test", role: "operator", requestId: "r2" };
  let ids: { legacy: string; shard: string };

  beforeAll(async () => {
    const dbs = await db().database.findMany();
    ids = {
      legacy: dbs.find((d) => d.kind === "legacy")?.id ?? "",
      shard: dbs.find((d) => d.kind === "shard")?.id ?? "",
    };
  });

  it("refuses a shard key that no table has, naming the field, and changes nothing", async () => {
    const before = await auditCount();
    const error = await createPlan(operator, {
      name: "bad key",
      sourceDatabaseId: ids.legacy,
      shardDatabaseIds: [ids.shard],
      shardKeyColumn: "customer_id",
    }).catch((e) => e);
    expect(error).toBeInstanceOf(AppError);
    expect(error.field).toBe("shardKeyColumn");
    expect(error.message).toMatch(/No table in "legacy" has a column named "customer_id"/);
    expect(await db().plan.count()).toBe(0);
    expect(await auditCount()).toBe(before);
  });

  it("creates, edits and moves a plan through its phases, refusing stale and illegal changes", async () => {
    const plan = await createPlan(operator, {
      name: "split monolith",
      sourceDatabaseId: ids.legacy,
      shardDatabaseIds: [ids.shard],
      shardKeyColumn: "tenant_id",
    });
    expect(plan.phase).toBe("define_key");
    expect(plan.shards.map((s) => s.name)).toEqual(["shard-1"]);
    expect(plan.available.advance.allowed).toBe(true);

    const edited = await updatePlanSettings(operator, {
      planId: plan.id,
      expectedVersion: plan.version,
      settings: { ...DEFAULT_PLAN_SETTINGS, freezeBudgetMs: 1500 },
      reason: "tighter freeze",
    });
    expect(edited.settings.freezeBudgetMs).toBe(1500);
    expect(edited.version).toBe(plan.version + 1);

    const stale = await updatePlanSettings(operator, {
      planId: plan.id,
      expectedVersion: plan.version,
      settings: DEFAULT_PLAN_SETTINGS,
    }).catch((e) => e);
    expect(stale.code).toBe("CONFLICT");
    expect((await getPlan(plan.id)).settings.freezeBudgetMs).toBe(1500);

    let current = await transitionPlan(operator, {
      planId: plan.id,
      expectedVersion: edited.version,
      event: "advance",
      reason: "key analysed",
    });
    current = await transitionPlan(operator, {
      planId: plan.id,
      expectedVersion: current.version,
      event: "advance",
      reason: "router deployed",
    });
    expect(current.phase).toBe("two_way_cdc");
    expect(current.transitions.map((t) => t.to)).toEqual(["define_key", "application_router", "two_way_cdc"]);

    const archive = await transitionPlan(operator, {
      planId: plan.id,
      expectedVersion: current.version,
      event: "archive",
      reason: "abandon",
    }).catch((e) => e);
    expect(archive.code).toBe("PRECONDITION_FAILED");
    expect(archive.message).toMatch(/Revert it/);
    expect((await getPlan(plan.id)).phase).toBe("two_way_cdc");

    current = await transitionPlan(operator, {
      planId: plan.id,
      expectedVersion: current.version,
      event: "revert",
      reason: "replication not needed yet",
    });
    current = await transitionPlan(operator, {
      planId: plan.id,
      expectedVersion: current.version,
      event: "archive",
      reason: "superseded",
    });
    expect(current.status).toBe("archived");
    const afterArchive = await updatePlanSettings(operator, {
      planId: plan.id,
      expectedVersion: current.version,
      settings: DEFAULT_PLAN_SETTINGS,
    }).catch((e) => e);
    expect(afterArchive.message).toMatch(/archived/);

    const actions = (
      await db().auditEvent.findMany({ where: { planId: plan.id }, orderBy: { seq: "asc" } })
    ).map((e) => e.action);
    expect(actions).toEqual([
      "plan.create",
      "plan.settings.update",
      "plan.advance",
      "plan.advance",
      "plan.revert",
      "plan.archive",
    ]);
  });

  it("a database used by a plan cannot be removed", async () => {
    const error = await removeDatabase(operator, { databaseId: ids.legacy }).catch((e) => e);
    expect(error.code).toBe("PRECONDITION_FAILED");
  });
});

describe("roles, enforced by the API", () => {
  it("a viewer reads but cannot create or edit: FORBIDDEN, and nothing changes", async () => {
    const viewer = await callerFor("viewer");
    const plans = await viewer.plans.list({ includeArchived: true });
    expect(plans.length).toBeGreaterThan(0);
    // Refusals are audited as their own kind; nothing else may be.
    const changes = () => db().auditEvent.count({ where: { action: { not: "access.refused" } } });
    const before = { plans: await db().plan.count(), audit: await changes() };
    const dbs = await viewer.databases.list();
    const attempt = viewer.plans.create({
      name: "viewer plan",
      sourceDatabaseId: dbs.find((d) => d.kind === "legacy")?.id ?? "",
      shardDatabaseIds: [dbs.find((d) => d.kind === "shard")?.id ?? ""],
      shardKeyColumn: "tenant_id",
    });
    await expect(attempt).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(
      viewer.plans.updateSettings({
        planId: plans[0]?.id ?? "",
        expectedVersion: 1,
        settings: DEFAULT_PLAN_SETTINGS,
      }),
    ).rejects.toMatchObject({ code: "FORBIDDEN" });
    expect({ plans: await db().plan.count(), audit: await changes() }).toEqual(before);
  });

  it("an operator cannot change topology; an admin can", async () => {
    const operator = await callerFor("operator");
    await expect(
      operator.databases.register({ name: "shard-9", kind: "shard", url: shard.url }),
    ).rejects.toMatchObject({ code: "FORBIDDEN" });
  });

  it("invalid input is refused as BAD_REQUEST before any service runs", async () => {
    const admin = await callerFor("admin");
    const error = await admin.databases
      .register({ name: "X!", kind: "shard", url: "mysql://nope" })
      .catch((e) => e);
    expect(error).toBeInstanceOf(TRPCError);
    expect(error.code).toBe("BAD_REQUEST");
  });

  it("signed-out calls are UNAUTHORIZED", async () => {
    const anonymous = createCaller({ user: null, requestId: "anon" });
    await expect(anonymous.plans.list()).rejects.toMatchObject({ code: "UNAUTHORIZED" });
  });
});

describe("audit chain", () => {
  it("stays one chain under concurrent writers", async () => {
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        db().$transaction((tx) =>
          appendAuditEvent(tx, {
            actor: systemActor(`concurrent-${i}`),
            action: "test.concurrent",
            target: { type: "test", id: String(i) },
            after: { i, nested: { b: 1, a: [1, 2] } },
          }),
        ),
      ),
    );
    const result = await verifyAuditChain(db());
    expect(result.ok).toBe(true);
    expect(result.checked).toBe(await auditCount());
  });

  it("the database refuses UPDATE, DELETE and TRUNCATE", async () => {
    await expect(control.pool.query("update audit_event set reason = 'edited'")).rejects.toThrow(
      /append-only/,
    );
    await expect(control.pool.query("delete from audit_event")).rejects.toThrow(/append-only/);
    await expect(control.pool.query("truncate audit_event")).rejects.toThrow(/append-only/);
  });

  it("detects a superuser's tampering, naming the altered event", async () => {
    const victim = await db().auditEvent.findFirstOrThrow({ where: { action: "plan.settings.update" } });
    const client = await control.pool.connect();
    try {
      // A superuser can bypass the trigger; the chain is what catches it.
      await client.query("set session_replication_role = replica");
      await client.query("update audit_event set reason = 'nothing to see here' where seq = $1", [
        victim.seq,
      ]);
      await client.query("set session_replication_role = origin");
    } finally {
      client.release();
    }
    const result = await verifyAuditChain(db());
    expect(result.ok).toBe(false);
    expect(result.brokenAt?.seq).toBe(victim.seq.toString());
    expect(result.brokenAt?.problem).toMatch(/altered/);
  });
});
