// Repair on real servers under different session defaults: an owner whose sessions render dates as
// 'SQL, DMY' repairs a shard whose sessions read 'ISO, MDY' to exactly the owner's values (both
// sides pinned), instead of swapping day and month or failing.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { introspectSource } from "../analysis/introspect";
import { copyChunk } from "../backfill/copy-chunk";
import { prepareShard } from "../backfill/prepare-shards";
import { hashPlacement } from "../router/placement";
import { planTable, type TablePlan } from "../shared/table-plan";
import { repairRow } from "./repair";

let legacy: TestDatabase;
let shard: TestDatabase;
let plan: TablePlan;
const placement = hashPlacement(1);

async function withClient<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>) {
  const c = await pool.connect();
  try {
    return await fn(c);
  } finally {
    c.release();
  }
}

beforeAll(async () => {
  legacy = await createTestDatabase("repair_legacy");
  shard = await createTestDatabase("repair_shard");
  // Before the pool's first connection: every legacy session renders dates day first.
  await withClient(shard.pool, (c) => c.query(`alter database ${legacy.name} set datestyle = 'SQL, DMY'`));
  await legacy.pool.query(`
    create table bills (tenant_id int not null, id int not null, due date not null, primary key (tenant_id, id));
    insert into bills values (1, 1, date '2024-02-03'), (1, 2, date '2024-02-13');`);
  const schema = await withClient(legacy.pool, (c) => introspectSource(c, "tenant_id"));
  const table = schema.tables.find((t) => t.name === "bills");
  if (!table) throw new Error("no bills table");
  plan = planTable(table, schema.shardKeyColumn);
  await withClient(shard.pool, (c) => prepareShard(c, "shard-0", schema));
  await withClient(legacy.pool, (source) =>
    withClient(shard.pool, (target) => copyChunk(source, [target], placement, plan, null, 100)),
  );
});

afterAll(async () => {
  await legacy?.drop();
  await shard?.drop();
});

describe("repairRow", () => {
  it("copies the owner's values under the pinned rendering settings", async () => {
    expect((await legacy.pool.query("show datestyle")).rows[0]?.DateStyle).toBe("SQL, DMY");
    await shard.pool.query("update bills set due = date '1999-01-01'");
    for (const id of ["1", "2"]) {
      const outcome = await repairRow(legacy.pool, [shard.pool], placement, plan, 0, ["1", id]);
      expect(outcome.action).toBe("upserted");
    }
    const { rows } = await shard.pool.query<{ id: number; due: string }>(
      "select id, to_char(due, 'YYYY-MM-DD') as due from bills order by id",
    );
    expect(rows).toEqual([
      { id: 1, due: "2024-02-03" },
      { id: 2, due: "2024-02-13" },
    ]);
  });
});
