// Row-by-row comparison of legacy and shards, for tests: every row of every table, by primary
// key, as the server's text rendering (session TimeZone pinned so renderings agree). Reports
// missing, extra and changed rows per table and shard; an empty list means an exact copy.
import type pg from "pg";
import type { SourceSchema } from "../engine/analysis/introspect";
import type { Placement } from "../engine/router/placement";
import { quoteIdent } from "../engine/sql/identifiers";

export interface RowDifference {
  table: string;
  shard: number;
  key: string;
  problem: "missing" | "extra" | "changed";
  legacy?: string;
  shardValue?: string;
}

async function readRows(client: pg.Pool, table: SourceSchema["tables"][number], shardKey: string) {
  const key = table.primaryKey.map((c) => `${quoteIdent(c)}::text`).join(` || '|' || `);
  const route = table.kind === "sharded" ? `${quoteIdent(shardKey)}::text` : "''";
  const c = await client.connect();
  try {
    await c.query("set timezone = 'UTC'; set extra_float_digits = 3; set datestyle = 'ISO, MDY'");
    const { rows } = await c.query<{ k: string; r: string; row: string }>(
      `select ${key} as k, ${route} as r, x::text as row from ${table.qualified} x`,
    );
    return rows;
  } finally {
    c.release();
  }
}

export async function compareShards(
  legacy: pg.Pool,
  shards: pg.Pool[],
  schema: SourceSchema,
  placement: Placement,
  limit = 50,
): Promise<RowDifference[]> {
  const differences: RowDifference[] = [];
  for (const table of schema.tables) {
    const expected = shards.map(() => new Map<string, string>());
    for (const row of await readRows(legacy, table, schema.shardKeyColumn)) {
      if (table.kind === "reference") for (const m of expected) m.set(row.k, row.row);
      else expected[placement.shardFor(row.r)]?.set(row.k, row.row);
    }
    for (const [ordinal, pool] of shards.entries()) {
      const want = expected[ordinal] ?? new Map<string, string>();
      const seen = new Set<string>();
      for (const row of await readRows(pool, table, schema.shardKeyColumn)) {
        seen.add(row.k);
        const legacyRow = want.get(row.k);
        if (legacyRow === undefined)
          differences.push({
            table: table.qualified,
            shard: ordinal,
            key: row.k,
            problem: "extra",
            shardValue: row.row,
          });
        else if (legacyRow !== row.row) {
          differences.push({
            table: table.qualified,
            shard: ordinal,
            key: row.k,
            problem: "changed",
            legacy: legacyRow,
            shardValue: row.row,
          });
        }
      }
      for (const [k, v] of want)
        if (!seen.has(k))
          differences.push({ table: table.qualified, shard: ordinal, key: k, problem: "missing", legacy: v });
      if (differences.length >= limit) return differences.slice(0, limit);
    }
  }
  return differences;
}
