// A database that held a plan's fence (the `shardshift` schema: fence_state, tenant_fence,
// drain_mark) or the snapshot guard (`_shardshift`) is introspected without them: a later movement
// from it copies only the application's tables, never our own as reference tables.
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { installFenceSchemaSql } from "../routing/fence-sql";
import { introspectSource } from "./introspect";

let legacy: TestDatabase;

beforeAll(async () => {
  legacy = await createTestDatabase("ownschemas");
  await legacy.pool.query(`
    create table orders (tenant_id int, id int, primary key (tenant_id, id));
    create schema _shardshift;
    create table _shardshift.cdc_touched (rel text, xid xid8, key text[]);`);
  await legacy.pool.query(installFenceSchemaSql());
});

afterAll(async () => {
  await legacy?.drop();
});

it("leaves the fence's and the guard's schemas out of the tables to move", async () => {
  const client = await legacy.pool.connect();
  try {
    const fenceTables = await client.query<{ n: number }>(
      "select count(*)::int as n from pg_tables where schemaname = 'shardshift'",
    );
    expect(fenceTables.rows[0]?.n).toBeGreaterThan(0); // the fence is really there
    const schema = await introspectSource(client, "tenant_id");
    expect(schema.tables.map((t) => t.qualified)).toEqual(['"public"."orders"']);
  } finally {
    client.release();
  }
});
