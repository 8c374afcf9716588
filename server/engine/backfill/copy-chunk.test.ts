// Shard preparation and chunked copy on real servers: the schema appears on every shard
// (idempotently), and copying every chunk of every table yields an exact, placed copy.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compareShards } from "../../testing/compare-shards";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { introspectSource, type SourceSchema } from "../analysis/introspect";
import { loadDemoDataset } from "../demo/dataset";
import { hashPlacement } from "../router/placement";
import { copyChunk, planTable } from "./copy-chunk";
import { prepareShard } from "./prepare-shards";

let legacy: TestDatabase;
let shards: TestDatabase[];
let schema: SourceSchema;

beforeAll(async () => {
  legacy = await createTestDatabase("chunk_legacy");
  shards = [await createTestDatabase("chunk_shard0"), await createTestDatabase("chunk_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: 300, rows: 20_000, seed: 7 });
  const client = await legacy.pool.connect();
  try {
    schema = await introspectSource(client, "tenant_id");
  } finally {
    client.release();
  }
});

afterAll(async () => {
  await legacy?.drop();
  for (const shard of shards ?? []) await shard.drop();
});

async function withClient<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>) {
  const c = await pool.connect();
  try {
    return await fn(c);
  } finally {
    c.release();
  }
}

describe("shard preparation", () => {
  it("classifies tables and creates the schema on every shard, idempotently", async () => {
    const kinds = Object.fromEntries(schema.tables.map((t) => [t.name, t.kind]));
    expect(kinds).toMatchObject({ currencies: "reference", billing_plans: "reference", tasks: "sharded", events: "sharded" });
    for (const [i, shard] of shards.entries()) {
      const first = await withClient(shard.pool, (c) => prepareShard(c, `shard-${i}`, schema));
      expect(first.createdTables).toHaveLength(schema.tables.length);
      const second = await withClient(shard.pool, (c) => prepareShard(c, `shard-${i}`, schema));
      expect(second.createdTables).toEqual([]);
    }
    const { rows } = await shards[0]!.pool.query(
      "select count(*)::int as n from pg_constraint where contype = 'f' and connamespace = 'public'::regnamespace",
    );
    expect(rows[0].n).toBe(schema.tables.reduce((n, t) => n + t.foreignKeys.length, 0));
  });

  it("copies every row to the shard its tenant is placed on, reference tables to all", async () => {
    const placement = hashPlacement(shards.length);
    await withClient(legacy.pool, async (source) => {
      const targets = await Promise.all(shards.map((s) => s.pool.connect()));
      try {
        for (const table of schema.tables) {
          const plan = planTable(table, "tenant_id");
          let after: string[] | null = null;
          for (;;) {
            const chunk = await copyChunk(source, targets, placement, plan, after, 997);
            if (chunk.rows === 0) break;
            after = chunk.lastKey;
          }
        }
      } finally {
        for (const t of targets) t.release();
      }
    });
    const differences = await compareShards(legacy.pool, shards.map((s) => s.pool), schema, placement);
    expect(differences).toEqual([]);
    const perShard = await Promise.all(shards.map(async (s) => (await s.pool.query("select count(*)::int n from tasks")).rows[0].n));
    expect(perShard.every((n) => n > 0)).toBe(true);
  });
});
