// Breaking the full pass's pacing (ScanThrottle) on real servers: statistics that are stale or
// missing (a table never analyzed, or analyzed empty and then filled — the shards right after a
// backfill), rows one per page, a partitioned table with leaves of very different sizes. Every
// row must be hashed exactly once, and every side must be paced by the rows it really scans: a
// chunk expects at most maxChunkRows, and what the bucket is charged adds up to the rows read.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { introspectSource, type SourceSchema } from "@/server/engine/analysis/introspect";
import { copyChunk } from "@/server/engine/backfill/copy-chunk";
import { prepareShard } from "@/server/engine/backfill/prepare-shards";
import { hashPlacement, type Placement } from "@/server/engine/router/placement";
import { planTable } from "@/server/engine/shared/table-plan";
import { createTestDatabase, type TestDatabase } from "@/server/testing/databases";
import { fullPass, type ScanThrottle } from "./chunk-hash";

let legacy: TestDatabase;
let shards: TestDatabase[];
let schema: SourceSchema;
let placement: Placement;

const NARROW_ROWS = 120_000;
const WIDE_ROWS = 400;

async function withClient<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>) {
  const c = await pool.connect();
  try {
    return await fn(c);
  } finally {
    c.release();
  }
}

async function copyAll(only: SourceSchema) {
  await withClient(legacy.pool, async (source) => {
    const targets = await Promise.all(shards.map((s) => s.pool.connect()));
    try {
      for (const table of only.tables) {
        const plan = planTable(table, only.shardKeyColumn);
        let after: string[] | null = null;
        for (;;) {
          const chunk = await copyChunk(source, targets, placement, plan, after, 20_000);
          if (chunk.rows === 0) break;
          after = chunk.lastKey;
        }
      }
    } finally {
      for (const t of targets) t.release();
    }
  });
}

async function reltuples(pool: pg.Pool, table: string): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    "select reltuples::float8 as n from pg_class where oid = $1::regclass",
    [table],
  );
  return Number(rows[0]?.n);
}

async function count(pool: pg.Pool, table: string): Promise<number> {
  return Number((await pool.query(`select count(*)::int as n from ${table}`)).rows[0].n);
}

beforeAll(async () => {
  legacy = await createTestDatabase("brk_pace_legacy");
  shards = [await createTestDatabase("brk_pace_shard0"), await createTestDatabase("brk_pace_shard1")];
  placement = hashPlacement(shards.length);
  await legacy.pool.query(`
    create table narrow (tenant_id int not null, id int not null, primary key (tenant_id, id))
      with (autovacuum_enabled = off);
    create table wide (tenant_id int not null, id int not null, pad text, primary key (tenant_id, id))
      with (autovacuum_enabled = off);
    alter table wide alter column pad set storage plain;
    create table parts (tenant_id int not null, id int not null, primary key (tenant_id, id))
      partition by range (id);
    create table parts_big partition of parts for values from (0) to (1000000) with (autovacuum_enabled = off);
    create table parts_s1 partition of parts for values from (1000000) to (1000100) with (autovacuum_enabled = off);
    create table parts_s2 partition of parts for values from (1000100) to (1000200) with (autovacuum_enabled = off);
    create table parts_s3 partition of parts for values from (1000200) to (1000300) with (autovacuum_enabled = off);
    create table parts_s4 partition of parts for values from (1000300) to (1000400) with (autovacuum_enabled = off);
    -- Analyzed while empty: reltuples 0 from here on, whatever is loaded next.
    analyze narrow;`);
  await legacy.pool.query(`
    insert into narrow select 1 + g % 97, g from generate_series(1, ${NARROW_ROWS}) g;
    insert into wide select 1 + g % 13, g, repeat(md5(g::text), 150) from generate_series(1, ${WIDE_ROWS}) g;
    insert into parts select 1 + g % 31, g from generate_series(1, 40000) g;
    insert into parts select 1 + g % 31, g from generate_series(1000000, 1000399) g;
    analyze wide, parts_big, parts_s1, parts_s2, parts_s3, parts_s4;`);
  schema = await withClient(legacy.pool, (c) => introspectSource(c, "tenant_id"));
  for (const [i, shard] of shards.entries()) {
    await withClient(shard.pool, (c) => prepareShard(c, `shard-${i}`, schema));
    for (const t of ["narrow", "wide", "parts"]) {
      await shard.pool.query(`alter table ${t} set (autovacuum_enabled = off)`).catch(() => {});
    }
  }
  await copyAll(schema);
}, 120_000);

afterAll(async () => {
  await legacy?.drop();
  for (const shard of shards ?? []) await shard.drop();
});

interface Asked {
  side: number;
  rows: number;
}

function recorder(maxChunkRows: number): { throttle: ScanThrottle; asked: Asked[] } {
  const asked: Asked[] = [];
  return {
    asked,
    throttle: {
      maxChunkRows,
      async take(side, rows) {
        asked.push({ side, rows });
      },
    },
  };
}

function only(name: string): SourceSchema {
  return { ...schema, tables: schema.tables.filter((t) => t.name === name) };
}

describe("full pass pacing against stale statistics", () => {
  it("the statistics are really stale: legacy analyzed empty, the shards never analyzed", async () => {
    expect(await reltuples(legacy.pool, "narrow")).toBe(0);
    for (const s of shards) expect(await reltuples(s.pool, "narrow")).toBeLessThanOrEqual(0);
    expect(await count(legacy.pool, "narrow")).toBe(NARROW_ROWS);
  });

  it("hashes every row once and still paces every side by the rows it really scans", async () => {
    const maxChunkRows = 1_000;
    const { throttle, asked } = recorder(maxChunkRows);
    const result = await fullPass(
      legacy.pool,
      shards.map((s) => s.pool),
      placement,
      only("narrow"),
      undefined,
      throttle,
    );
    expect(result.mismatchedChunks).toEqual([]);
    expect(result.rowsVerified).toBe(NARROW_ROWS);
    expect(result.legacyRows).toBe(NARROW_ROWS);
    const sideRows = [NARROW_ROWS, ...(await Promise.all(shards.map((s) => count(s.pool, "narrow"))))];
    for (const [side, rows] of sideRows.entries()) {
      const mine = asked.filter((a) => a.side === side);
      // Chunks of at most maxChunkRows rows: at least rows / maxChunkRows of them (a few spare).
      expect(mine.length, `side ${side}'s chunks`).toBeGreaterThanOrEqual(
        Math.floor(rows / maxChunkRows) - 2,
      );
      // What the bucket is charged is the side's real work, give or take the estimate's error.
      expect(Math.max(...mine.map((a) => a.rows)), `side ${side}'s largest chunk`).toBeLessThanOrEqual(
        maxChunkRows,
      );
      const charged = mine.reduce((n, a) => n + a.rows, 0);
      expect(charged, `side ${side}'s charged rows`).toBeGreaterThan(rows * 0.5);
    }
  });

  it("one row per page, a tiny bound: step ≥ 1, every row once, one page a chunk", async () => {
    const { throttle, asked } = recorder(1);
    const result = await fullPass(
      legacy.pool,
      shards.map((s) => s.pool),
      placement,
      only("wide"),
      undefined,
      throttle,
    );
    expect(result.mismatchedChunks).toEqual([]);
    expect(result.rowsVerified).toBe(WIDE_ROWS);
    const pages = Number(
      (await legacy.pool.query("select pg_relation_size('wide') / current_setting('block_size')::int as p"))
        .rows[0].p,
    );
    expect(pages).toBeGreaterThanOrEqual(WIDE_ROWS);
    expect(asked.filter((a) => a.side === 0).length).toBe(pages);
  });

  it("a partitioned table with one large leaf and small ones: every row once, chunks within the bound", async () => {
    const maxChunkRows = 2_000;
    const { throttle, asked } = recorder(maxChunkRows);
    const result = await fullPass(
      legacy.pool,
      shards.map((s) => s.pool),
      placement,
      only("parts"),
      undefined,
      throttle,
    );
    expect(result.mismatchedChunks).toEqual([]);
    expect(result.rowsVerified).toBe(40_400);
    const legacyChunks = asked.filter((a) => a.side === 0);
    expect(legacyChunks.length).toBeGreaterThanOrEqual(Math.floor(40_400 / maxChunkRows) - 2);
    expect(legacyChunks.reduce((n, a) => n + a.rows, 0)).toBeGreaterThan(40_400 * 0.5);
  });
});
