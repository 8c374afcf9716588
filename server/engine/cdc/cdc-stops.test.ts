// What CDC cannot replay safely stops it with a clear error on the plan, instead of being ignored
// (a schema change on legacy during the migration, a stream that keeps failing); a TRUNCATE of a
// copied table is replayed exactly, on every shard.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { systemActor } from "../../services/actor";
import { registerDatabase } from "../../services/databases/databases";
import { controlDataMovement, startDataMovement } from "../../services/movement/movement";
import { createPlan, transitionPlan } from "../../services/plans/plans";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitForBackfill, waitForCatchUp } from "../../testing/movement-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";
import { readSlotStatus } from "./slot";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
let worker: Worker;
const actor = systemActor("cdc-stops-test", "engineer@test");

beforeAll(async () => {
  control = await useControlPlane("stops_control");
  legacy = await createTestDatabase("stops_legacy");
  shard = await createTestDatabase("stops_shard");
  await legacy.pool.query(`
    create table accounts (tenant_id bigint not null, id bigint not null, name text, primary key (tenant_id, id));
    create table notes (tenant_id bigint not null, id bigint not null, body text, primary key (tenant_id, id));
    insert into accounts select t, 1, 'a' || t from generate_series(1, 50) t;
    insert into notes select t, 1, 'n' || t from generate_series(1, 50) t;
    create table prices (tenant_id bigint not null, id bigint not null, amount numeric(10,2), primary key (tenant_id, id));
    insert into prices select t, 1, t * 1.25 from generate_series(1, 20) t;`);
  worker = await startWorker(control.url, { log: () => {} });
});

afterAll(async () => {
  await worker?.stop();
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

async function planWithMovement(name: string) {
  const existing = await db().database.findMany();
  const source =
    existing.find((d) => d.kind === "legacy")?.id ??
    (await registerDatabase(actor, { name: "legacy", kind: "legacy", url: legacy.url })).id;
  const target =
    existing.find((d) => d.kind === "shard")?.id ??
    (await registerDatabase(actor, { name: "shard-0", kind: "shard", url: shard.url })).id;
  let plan = await createPlan(actor, {
    name,
    sourceDatabaseId: source,
    shardDatabaseIds: [target],
    shardKeyColumn: "tenant_id",
  });
  for (const reason of ["key ok", "router ok"]) {
    plan = await transitionPlan(actor, {
      planId: plan.id,
      expectedVersion: plan.version,
      event: "advance",
      reason,
    });
  }
  await startDataMovement(actor, { planId: plan.id, reason: "go", resetShards: true });
  await waitFor("the first CDC confirmation", async () => {
    await legacy.pool.query("update accounts set name = name where tenant_id = 1");
    return (await db().dataMovement.findUnique({ where: { planId: plan.id } }))?.confirmedLsn;
  });
  return plan;
}

async function stopAndClean(planId: string) {
  await controlDataMovement(actor, { planId, action: "cancel", reason: "test over" });
  await waitFor(
    "cancellation",
    async () => (await db().dataMovement.findUnique({ where: { planId } }))?.status === "cancelled",
  );
}

describe("CDC stops clearly on what it cannot replay", () => {
  it("a TRUNCATE on legacy is replayed on every shard (pgbench truncates its history at every run)", {
    timeout: 120_000,
  }, async () => {
    const plan = await planWithMovement("truncate plan");
    await waitForBackfill(plan.id);
    // pgbench's pattern: small transactions appending history and updating accounts, and a
    // TRUNCATE of the history table between runs, while the writes go on.
    for (let i = 1; i <= 120; i++) {
      if (i === 60) await legacy.pool.query("truncate notes");
      await legacy.pool.query(
        `begin; update accounts set name = 'n${i}' where tenant_id = ${(i % 50) + 1};
         insert into notes values (${(i % 50) + 1}, ${1000 + i}, 'h${i}'); commit`,
      );
    }
    const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } });
    await waitForCatchUp(legacy.pool, movement.slotName);
    expect((await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } })).status).toBe(
      "running",
    );
    const rows = async (pool: typeof legacy.pool, table: string) =>
      (await pool.query(`select x::text as r from ${table} x order by 1`)).rows;
    expect(await rows(shard.pool, "notes")).toEqual(await rows(legacy.pool, "notes"));
    expect(await rows(shard.pool, "accounts")).toEqual(await rows(legacy.pool, "accounts"));
    expect((await rows(legacy.pool, "notes")).length).toBe(61);
    await stopAndClean(plan.id);
    expect(await readSlotStatus(legacy.pool, movement.slotName)).toBeNull();
    await legacy.pool.query(
      "truncate notes; insert into notes select t, 1, 'n' || t from generate_series(1, 50) t",
    );
  });

  it("a schema change on legacy fails the movement with a message naming the table", {
    timeout: 90_000,
  }, async () => {
    const plan = await planWithMovement("alter plan");
    await legacy.pool.query("alter table accounts add column email text");
    await legacy.pool.query("insert into accounts values (999, 1, 'new', 'x@y')");
    const movement = await waitFor("the movement to fail", async () => {
      const m = await db().dataMovement.findUnique({ where: { planId: plan.id } });
      return m?.status === "failed" ? m : null;
    });
    expect(movement.lastError).toMatch(/schema of public\.accounts changed on legacy/);
    await stopAndClean(plan.id);
    await legacy.pool.query(
      "delete from accounts where tenant_id = 999; alter table accounts drop column email",
    );
  });

  it("a stream that keeps failing the same way fails the movement with the cause and what to do", {
    timeout: 180_000,
  }, async () => {
    const plan = await planWithMovement("poison plan");
    // Copied first: a chunk that read the poisoned row would fail in the copier, not in the stream.
    await waitForBackfill(plan.id);
    // The shard refuses a value legacy accepts: every restart of the stream fails on the same row.
    await shard.pool.query("alter table notes add constraint no_poison check (body <> 'poison')");
    try {
      await legacy.pool.query("update notes set body = 'poison' where tenant_id = 3");
      const movement = await waitFor(
        "the movement to fail",
        async () => {
          const m = await db().dataMovement.findUnique({ where: { planId: plan.id } });
          return m?.status === "failed" ? m : null;
        },
        120_000,
      ); // five restarts over at least 15 s: slower on a loaded machine
      expect(movement.lastError).toMatch(/failed \d+ times in a row.*no_poison.*resume the data movement/);
      const events = await db().engineEvent.findMany({ where: { planId: plan.id, level: "error" } });
      expect(events.some((e) => /no_poison/.test(e.message))).toBe(true);
    } finally {
      await shard.pool.query("alter table notes drop constraint no_poison");
    }
    await stopAndClean(plan.id);
    await legacy.pool.query("update notes set body = 'n' || tenant_id where tenant_id = 3");
  });

  it("a column type changed while no stream ran is detected on restart, never truncated", {
    timeout: 120_000,
  }, async () => {
    const plan = await planWithMovement("typmod plan");
    await waitForBackfill(plan.id);
    const { slotName } = await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } });
    await waitForCatchUp(legacy.pool, slotName);
    // The stream is down (no worker) while legacy widens a column and writes a value only the new
    // type holds; the next stream's first Relation message is simply the new definition.
    await worker.stop();
    await legacy.pool.query("alter table prices alter column amount type numeric(12,4)");
    await legacy.pool.query("insert into prices values (7, 2, 1.2345)");
    worker = await startWorker(control.url, { log: () => {} });
    const movement = await waitFor("the movement to fail", async () => {
      const m = await db().dataMovement.findUnique({ where: { planId: plan.id } });
      return m?.status === "failed" ? m : null;
    });
    expect(movement.lastError).toMatch(
      /schema of public\.prices changed.*amount numeric\(12,4\).*amount numeric\(10,2\)/,
    );
    expect((await shard.pool.query("select * from prices where id = 2")).rowCount).toBe(0);
    await stopAndClean(plan.id);
    await legacy.pool.query(
      "delete from prices where id = 2; alter table prices alter column amount type numeric(10,2)",
    );
  });

  it("refuses to fill shards that hold an earlier copy's rows, or that another movement is filling", {
    timeout: 90_000,
  }, async () => {
    const first = await planWithMovement("first of two");
    const sources = await db().database.findMany();
    let second = await createPlan(actor, {
      name: "second of two",
      sourceDatabaseId: sources.find((d) => d.kind === "legacy")?.id ?? "",
      shardDatabaseIds: [sources.find((d) => d.kind === "shard")?.id ?? ""],
      shardKeyColumn: "tenant_id",
    });
    for (const reason of ["key ok", "router ok"]) {
      second = await transitionPlan(actor, {
        planId: second.id,
        expectedVersion: second.version,
        event: "advance",
        reason,
      });
    }
    await expect(
      startDataMovement(actor, { planId: second.id, reason: "go", resetShards: true }),
    ).rejects.toThrow(/Plan "first of two" is moving data into the same shard/);
    await stopAndClean(first.id);
    await expect(startDataMovement(actor, { planId: second.id, reason: "go" })).rejects.toThrow(
      /already holds rows in public\.(accounts|notes).*Empty the shard tables first/,
    );
    await startDataMovement(actor, { planId: second.id, reason: "go", resetShards: true });
    await stopAndClean(second.id);
  });
});
