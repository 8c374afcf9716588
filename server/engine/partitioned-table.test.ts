// A partitioned legacy table, moved end to end: backfill, then CDC of inserts, updates that move a
// row from one partition to another, and deletes — every row equal on the shards afterwards. The
// publication sends each partition's changes as the root's (publish_via_partition_root), and the
// shards hold the root as one plain table.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../db";
import { systemActor } from "../services/actor";
import { compareShards } from "../testing/compare-shards";
import { useControlPlane } from "../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../testing/databases";
import { startMovementOn, waitForBackfill, waitForCatchUp } from "../testing/movement-fixture";
import { waitFor } from "../testing/worker-process";
import { startWorker, type Worker } from "../worker";
import type { SourceSchema } from "./analysis/introspect";
import { fullPass } from "./parity/chunk-hash";
import { runParityCheck } from "./parity/run-check";
import { hashPlacement } from "./router/placement";
import { runExclusivePerPlan } from "./runtime/plan-lock";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[] = [];
let worker: Worker;
const actor = systemActor("partitioned-test", "engineer@test");

beforeAll(async () => {
  control = await useControlPlane("part_control");
  legacy = await createTestDatabase("part_legacy");
  shards = [await createTestDatabase("part_shard_a"), await createTestDatabase("part_shard_b")];
  await legacy.pool.query(`
    create table orders (
      tenant_id bigint not null, id bigint not null, placed_on date not null, note text,
      primary key (tenant_id, id, placed_on)
    ) partition by range (placed_on);
    create table orders_2025 partition of orders for values from ('2025-01-01') to ('2026-01-01');
    create table orders_2026 partition of orders for values from ('2026-01-01') to ('2027-01-01');
    create table orders_other partition of orders default;
    create index orders_note on orders (tenant_id, note);

    create table events (tenant_id bigint not null, id bigint not null, payload jsonb, primary key (tenant_id, id))
      partition by hash (tenant_id);
    create table events_0 partition of events for values with (modulus 3, remainder 0);
    create table events_1 partition of events for values with (modulus 3, remainder 1);
    create table events_2 partition of events for values with (modulus 3, remainder 2);

    insert into orders
      select 1 + g % 40, g, date '2025-01-01' + (g % 900), 'order ' || g from generate_series(1, 3000) g;
    insert into events select 1 + g % 40, g, jsonb_build_object('n', g) from generate_series(1, 2000) g;
    -- As autovacuum does: it analyzes partitions, never a partitioned root (whose reltuples stays -1).
    analyze orders_2025, orders_2026, orders_other, events_0, events_1, events_2;`);
  worker = await startWorker(control.url, { log: () => {} });
});

afterAll(async () => {
  await worker?.stop();
  await control?.drop();
  await legacy?.drop();
  for (const shard of shards) await shard.drop();
});

async function partitionsHolding(table: string): Promise<number> {
  const { rows } = await legacy.pool.query<{ n: number }>(
    `select count(distinct tableoid)::int as n from ${table}`,
  );
  return rows[0]?.n ?? 0;
}

describe("a partitioned table on legacy", () => {
  it("is backfilled and replicated through its root, rows moving between partitions included", {
    timeout: 180_000,
  }, async () => {
    expect(await partitionsHolding("orders")).toBe(3);
    expect(await partitionsHolding("events")).toBe(3);
    const { planId, slotName } = await startMovementOn(
      actor,
      "partitioned",
      legacy.url,
      shards.map((s) => s.url),
    );
    const tasks = await db().backfillTask.findMany({ where: { planId }, orderBy: { tableName: "asc" } });
    expect(tasks.map((t) => t.tableName)).toEqual(['"public"."events"', '"public"."orders"']);
    // The root's size is its partitions': the progress bar needs a total before the census counts.
    expect(tasks.map((t) => Number(t.rowsTotal))).toEqual([2000, 3000]);
    await waitForBackfill(planId);

    // After the copy, through CDC only.
    await legacy.pool.query(`
      insert into orders
        select 1 + g % 40, g, date '2025-06-01' + (g % 700), 'late ' || g from generate_series(3001, 3400) g;
      -- from 2025 into 2026, and from 2026 into the default partition
      update orders set placed_on = placed_on + 365, note = note || ' moved' where id % 7 = 0 and placed_on < '2026-01-01';
      update orders set placed_on = date '2030-01-01', note = 'far' where id % 11 = 0 and placed_on >= '2026-01-01'
        and placed_on < '2027-01-01';
      update orders set note = 'in place' where id % 13 = 0;
      delete from orders where id % 17 = 0;
      insert into events select 1 + g % 40, g, jsonb_build_object('n', g) from generate_series(2001, 2300) g;
      update events set payload = payload || '{"u": true}' where id % 5 = 0;
      delete from events where id % 19 = 0;`);
    // Partitions each received and lost rows: the moves above went through all three of orders'.
    const { rows: moved } = await legacy.pool.query<{ n: number }>(
      "select count(*)::int as n from orders_other where note = 'far'",
    );
    expect(moved[0]?.n).toBeGreaterThan(0);
    await waitForCatchUp(legacy.pool, slotName);

    const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId } });
    expect(movement.status).toBe("running");
    const schema = movement.sourceSchema as unknown as SourceSchema;
    const differences = await compareShards(
      legacy.pool,
      shards.map((s) => s.pool),
      schema,
      hashPlacement(shards.length),
    );
    expect(differences).toEqual([]);
    const { rows: total } = await legacy.pool.query<{ n: number }>(
      "select (select count(*) from orders) + (select count(*) from events) as n",
    );
    let onShards = 0;
    for (const shard of shards) {
      const { rows } = await shard.pool.query<{ n: string }>(
        "select (select count(*) from orders) + (select count(*) from events) as n",
      );
      onShards += Number(rows[0]?.n ?? 0);
    }
    expect(onShards).toBe(Number(total[0]?.n));

    // Parity hashes the root's rows in every partition, and finds them equal.
    // (The worker may be running its own check: ours runs once that one let go of the plan's lock.)
    const check = await waitFor("a full parity check of our own", () =>
      runExclusivePerPlan(control.url, "parity", planId, () => runParityCheck(planId, "full")),
    );
    expect(check).toMatchObject({ confirmed: 0, unverified: [] });
    expect(check?.rowsVerified).toBe(Number(total[0]?.n));

    // Its throttle sees each chunk's rows: the root's TID ranges are walked over its partitions' pages
    // (the root alone has none, so the whole table was one chunk that expected one row).
    await legacy.pool.query("analyze orders_2025, orders_2026, orders_other, events_0, events_1, events_2");
    const expected: number[] = [];
    const pass = await fullPass(
      legacy.pool,
      shards.map((s) => s.pool),
      hashPlacement(shards.length),
      { ...schema, tables: schema.tables.filter((t) => t.name === "orders") },
      undefined,
      {
        maxChunkRows: null,
        async take(side, rows) {
          if (side === 0) expected.push(rows);
        },
      },
      4,
    );
    expect(pass.mismatchedChunks).toEqual([]);
    expect(expected.length).toBeGreaterThan(1);
    const sum = expected.reduce((a, b) => a + b, 0);
    expect(sum).toBeGreaterThan(pass.legacyRows / 2);
    expect(sum).toBeLessThan(pass.legacyRows * 2);
  });
});
