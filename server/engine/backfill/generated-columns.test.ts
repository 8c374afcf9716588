// Identity and generated columns on real servers: a GENERATED ALWAYS AS IDENTITY column outside
// the primary key is copied (both write modes, and a chunk copied twice) and replicated (a CDC
// upsert of a row the shard already has); stored and PostgreSQL 18 virtual generated columns are
// not copied — the shard computes them, as the same kind of column.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { introspectSource, type SourceSchema } from "../analysis/introspect";
import { tableApplier } from "../cdc/apply";
import type { Tuple } from "../cdc/pgoutput";
import { hashPlacement } from "../router/placement";
import { planTable, type TablePlan } from "../shared/table-plan";
import { copyChunk } from "./copy-chunk";
import { prepareShard } from "./prepare-shards";

let legacy: TestDatabase;
let shard: TestDatabase;
let schema: SourceSchema;
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

const rowsOf = async (pool: pg.Pool) =>
  (await pool.query("select tenant_id, id, seq::text, note, twice, thrice from items order by tenant_id, id"))
    .rows;

async function copyAll(mode: "range" | "upsert") {
  await withClient(legacy.pool, (source) =>
    withClient(shard.pool, async (target) => {
      let after: string[] | null = null;
      for (;;) {
        const chunk = await copyChunk(source, [target], placement, plan, after, 2, { mode });
        if (chunk.rows === 0) break;
        after = chunk.lastKey;
      }
    }),
  );
}

beforeAll(async () => {
  legacy = await createTestDatabase("gen_legacy");
  shard = await createTestDatabase("gen_shard");
  await legacy.pool.query(`
    create table items (
      tenant_id int not null, id int not null,
      seq bigint generated always as identity (start with 1000),
      note text,
      twice int generated always as (id * 2) virtual,
      thrice int generated always as (id * 3) stored,
      primary key (tenant_id, id));
    insert into items (tenant_id, id, note) select t, i, 'n' || i from generate_series(1, 2) t, generate_series(1, 3) i;`);
  schema = await withClient(legacy.pool, (c) => introspectSource(c, "tenant_id"));
  const table = schema.tables.find((t) => t.name === "items");
  if (!table) throw new Error("no items table");
  plan = planTable(table, schema.shardKeyColumn);
  await withClient(shard.pool, (c) => prepareShard(c, "shard-0", schema));
});

afterAll(async () => {
  await legacy?.drop();
  await shard?.drop();
});

describe("identity and generated columns", () => {
  it("records which generated columns are virtual, and copies neither kind", () => {
    const kinds = Object.fromEntries(table().columns.map((c) => [c.name, c.generatedKind ?? null]));
    expect(kinds).toMatchObject({ twice: "virtual", thrice: "stored", seq: null });
    expect(plan.copyColumns).toEqual(["tenant_id", "id", "seq", "note"]);
  });

  it("creates the shard's generated columns as the same kind, computed there", async () => {
    const { rows } = await shard.pool.query<{ attname: string; attgenerated: string }>(
      "select attname, attgenerated from pg_attribute where attrelid = 'items'::regclass and attname in ('twice', 'thrice') order by attname",
    );
    expect(rows).toEqual([
      { attname: "thrice", attgenerated: "s" },
      { attname: "twice", attgenerated: "v" },
    ]);
  });

  it("copies an ALWAYS identity column outside the key, twice over and in both write modes", async () => {
    await copyAll("range");
    expect(await rowsOf(shard.pool)).toEqual(await rowsOf(legacy.pool));
    await legacy.pool.query("update items set note = 'changed' where id = 2");
    await copyAll("upsert"); // every row conflicts: the DO UPDATE sets seq too
    expect(await rowsOf(shard.pool)).toEqual(await rowsOf(legacy.pool));
    await copyAll("range");
    expect(await rowsOf(shard.pool)).toEqual(await rowsOf(legacy.pool));
  });

  it("applies CDC upserts of rows the shard already has, one and many at a time", async () => {
    await legacy.pool.query("update items set note = 'cdc', seq = default where tenant_id = 1 and id = 1");
    await legacy.pool.query("update items set note = 'cdc2' where tenant_id = 2");
    const applier = tableApplier(table());
    const { rows } = await legacy.pool.query<Record<string, string | null>>(
      "select tenant_id::text, id::text, seq::text, note from items where note like 'cdc%' order by tenant_id, id",
    );
    const [first, ...rest] = rows as Tuple[];
    if (!first) throw new Error("no rows");
    const one = applier.upsert(first);
    await shard.pool.query(one.text, one.values);
    const many = one.merge?.many(
      rest.map((r) => applier.columns.map((c) => (r[c.name] as string | null) ?? null)),
    );
    if (!many) throw new Error("no multi-row form");
    await shard.pool.query(many.text, many.values);
    expect(await rowsOf(shard.pool)).toEqual(await rowsOf(legacy.pool));
  });
});

function table() {
  const t = schema.tables.find((x) => x.name === "items");
  if (!t) throw new Error("no items table");
  return t;
}
