// Shard preparation and chunked copy on real servers: the schema appears on every shard
// (idempotently), and copying every chunk of every table yields an exact, placed copy.
import type pg from "pg";
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
    expect(kinds).toMatchObject({
      currencies: "reference",
      billing_plans: "reference",
      tasks: "sharded",
      events: "sharded",
    });
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

  it("holds the chunk's rows locked on legacy until the shards have them", async () => {
    const placement = hashPlacement(shards.length);
    const table = schema.tables.find((t) => t.name === "tasks");
    if (!table) throw new Error("no tasks table");
    const plan = planTable(table, "tenant_id");
    const { rows } = await legacy.pool.query<{ tenant_id: string; id: string }>(
      "select tenant_id::text, id::text from tasks order by tenant_id, id limit 1",
    );
    const first = rows[0];
    if (!first) throw new Error("no task rows");
    let blocked: unknown = null;
    await withClient(legacy.pool, async (source) => {
      const targets = await Promise.all(shards.map((s) => s.pool.connect()));
      try {
        await copyChunk(source, targets, placement, plan, null, 50, async () => {
          // A concurrent writer must wait for the chunk: give up after 300 ms instead.
          blocked = await withClient(legacy.pool, async (writer) => {
            await writer.query("set lock_timeout = '300ms'");
            return writer
              .query("update tasks set title = title || '!' where tenant_id = $1 and id = $2", [
                first.tenant_id,
                first.id,
              ])
              .then(() => null)
              .catch((e: { code?: string }) => e.code);
          });
        });
      } finally {
        for (const t of targets) t.release();
      }
    });
    expect(blocked).toBe("55P03"); // lock_not_available: the row was locked while the shards were written
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
    const differences = await compareShards(
      legacy.pool,
      shards.map((s) => s.pool),
      schema,
      placement,
    );
    expect(differences).toEqual([]);
    const perShard = await Promise.all(
      shards.map(async (s) => (await s.pool.query("select count(*)::int n from tasks")).rows[0].n),
    );
    expect(perShard.every((n) => n > 0)).toBe(true);
  });
});
