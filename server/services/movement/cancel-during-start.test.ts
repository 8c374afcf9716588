// A cancel sent while a start is still preparing must stop that start from doing anything more.
// The start's claim was checked once, at the claim: a start held up on a shard (here: by another
// preparer's lock) and cancelled meanwhile went on, after the cancel had finished, to empty the
// shard tables ("Empty the shard tables first") and create a slot on legacy. Now each destructive
// step runs while the start's claim is held and still current.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { createCaller } from "../../trpc/root";
import { systemActor } from "../actor";
import { finishCancel, replicationNames } from "./movement";

const actor = systemActor("cancel-during-start", "engineer@test");
let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;

function operator(requestId: string) {
  return createCaller({
    user: { id: "operator-1", email: "operator@test", name: "Oskar Operator", role: "operator" },
    requestId,
  });
}

async function until(what: string, check: () => Promise<boolean>) {
  const deadline = Date.now() + 60_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  control = await useControlPlane("cancel_start_cp");
  legacy = await createTestDatabase("cancel_start_legacy");
  shard = await createTestDatabase("cancel_start_shard");
  await loadDemoDataset(legacy.pool, { tenants: 5, rows: 200, seed: 5 });
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

describe("a cancel during a start", () => {
  it("leaves the shards and legacy untouched by the cancelled start", async () => {
    const plan = await planAtTwoWayCdc(actor, "cancel-during-start", legacy.url, [shard.url]);
    const planId = plan.id;
    // A first start and cancel create the shard's tables; then the shard holds a row of its own.
    await operator("first").movement.start({ planId, reason: "first" });
    await operator("first-cancel").movement.control({ planId, action: "cancel", reason: "again" });
    await finishCancel(planId);
    const { rows: tables } = await shard.pool.query<{ t: string }>(
      "select format('%I.%I', schemaname, tablename) as t from pg_tables where schemaname = 'public' and tablename <> 'shardshift_touched' order by 1 limit 1",
    );
    const table = tables[0]?.t;
    if (!table) throw new Error("no shard table");
    const { rows: sample } = await legacy.pool.query(`select * from ${table} limit 1`);
    const columns = Object.keys(sample[0] ?? {});
    const writer = await shard.pool.connect();
    try {
      // One row without its parents (foreign keys are not the point here).
      await writer.query("set session_replication_role = replica");
      await writer.query(
        `insert into ${table} (${columns.map((c) => `"${c}"`).join(", ")}) values (${columns.map((_, i) => `$${i + 1}`).join(", ")})`,
        columns.map((c) => sample[0]?.[c]),
      );
    } finally {
      writer.release();
    }

    // Another preparer holds the shard: the start claims, then waits there.
    const holder = await shard.pool.connect();
    let started: Promise<unknown>;
    try {
      await holder.query("select pg_advisory_lock(hashtext('shardshift:prepare-shard'))");
      started = operator("slow-start")
        .movement.start({ planId, reason: "empty and start", resetShards: true })
        .then(
          () => null,
          (error: unknown) => error,
        );
      await until("the start's claim", async () => {
        const m = await db().dataMovement.findUnique({ where: { planId } });
        return m?.status === "preparing";
      });
      await until("the start to wait on the shard", async () => {
        const { rows } = await shard.pool.query<{ n: number }>(
          "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
        );
        return (rows[0]?.n ?? 0) > 0;
      });
      await operator("cancel").movement.control({ planId, action: "cancel", reason: "stop it" });
      await finishCancel(planId);
      expect((await db().dataMovement.findUniqueOrThrow({ where: { planId } })).status).toBe("cancelled");
    } finally {
      await holder.query("select pg_advisory_unlock_all()");
      holder.release();
    }
    const error = await started;
    expect(error).toMatchObject({ code: "CONFLICT" });
    expect((error as Error).message).toMatch(/cancelled while it was being started/);
    const { rows: left } = await shard.pool.query<{ n: number }>(`select count(*)::int as n from ${table}`);
    expect(left[0]?.n).toBe(1);
    // Slots belong to the server, which other test files share: count this plan's only.
    const { rows: slots } = await legacy.pool.query<{ n: number }>(
      "select count(*)::int as n from pg_replication_slots where slot_name = $1",
      [replicationNames(planId).slotName],
    );
    expect(slots[0]?.n).toBe(0);
    expect((await db().dataMovement.findUniqueOrThrow({ where: { planId } })).status).toBe("cancelled");
  }, 120_000);
});
