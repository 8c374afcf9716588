// What CDC cannot replay safely stops it with a clear error on the plan, instead of being ignored:
// a TRUNCATE and a schema change (ALTER TABLE) on legacy during the migration.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { systemActor } from "../../services/actor";
import { registerDatabase } from "../../services/databases/databases";
import { controlDataMovement, startDataMovement } from "../../services/movement/movement";
import { createPlan, transitionPlan } from "../../services/plans/plans";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
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
    insert into notes select t, 1, 'n' || t from generate_series(1, 50) t;`);
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
  it("a TRUNCATE on legacy fails the movement with a message naming the table", {
    timeout: 90_000,
  }, async () => {
    const plan = await planWithMovement("truncate plan");
    await legacy.pool.query("truncate notes");
    const movement = await waitFor("the movement to fail", async () => {
      const m = await db().dataMovement.findUnique({ where: { planId: plan.id } });
      return m?.status === "failed" ? m : null;
    });
    expect(movement.lastError).toMatch(/TRUNCATE of public\.notes on legacy during the migration/);
    const events = await db().engineEvent.findMany({ where: { planId: plan.id, level: "error" } });
    expect(events.some((e) => /TRUNCATE/.test(e.message))).toBe(true);
    await stopAndClean(plan.id);
    expect(await readSlotStatus(legacy.pool, movement.slotName)).toBeNull();
    await legacy.pool.query("insert into notes select t, 1, 'n' || t from generate_series(1, 50) t");
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
