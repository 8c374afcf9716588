// Parity speed: a full check of the data (in-database hashes on legacy and every shard, compared per
// tenant) against bare in-database hash aggregates — the least a check could do:
//
//   bare          sum(hashtextextended(x::text, 0)) over every table on legacy alone: the plain way
//                 to hash a table's rows, the baseline the aim is set against;
//   same hash     the check's own row hash (rowHashSql) summed over every table on legacy alone;
//   floor         that same aggregate on legacy and every shard at once. A full check must hash
//                 both sides; with every server on one machine they share its cores, so no check
//                 can beat this on the bench's hardware.
import type pg from "pg";
import type { SourceSchema } from "@/server/engine/analysis/introspect";
import { currentWalLsn } from "@/server/engine/cdc/slot";
import { fullPass, rowHashSql } from "@/server/engine/parity/chunk-hash";
import { withParitySession } from "@/server/engine/parity/session";
import type { Placement } from "@/server/engine/router/placement";
import { planTable } from "@/server/engine/shared/table-plan";

export interface RateFigure {
  rows: number;
  ms: number;
  rowsPerSecond: number;
}

export interface ParityRate {
  rowsVerified: number;
  ms: number;
  rowsPerSecond: number;
  mismatchedChunks: number;
  /**
   * WAL the full check wrote on legacy and on each shard: a read-only pass writes none unless it is
   * the first to read freshly written rows, whose hint bits it then sets (a full-page image each,
   * with data checksums on, as PostgreSQL 18 initializes by default).
   */
  walBytes: { legacy: number; shards: number[] };
  bare: RateFigure;
  sameHash: RateFigure;
  floor: RateFigure;
}

async function aggregate(
  db: pg.Pool,
  schema: SourceSchema,
  hash: (table: SourceSchema["tables"][number]) => string,
): Promise<number> {
  let rows = 0;
  await withParitySession(db, async (client) => {
    for (const table of schema.tables) {
      const { rows: result } = await client.query<{ n: string }>(
        `select count(*)::text as n, sum(${hash(table)}) from ${table.qualified} x`,
      );
      rows += Number(result[0]?.n ?? 0);
    }
  });
  return rows;
}

async function timed(legacyRows: () => Promise<number>): Promise<RateFigure> {
  const started = performance.now();
  const rows = await legacyRows();
  const ms = performance.now() - started;
  return { rows, ms, rowsPerSecond: (rows * 1000) / ms };
}

export async function measureParityRate(
  legacy: pg.Pool,
  shards: readonly pg.Pool[],
  placement: Placement,
  schema: SourceSchema,
): Promise<ParityRate> {
  const walFrom = await Promise.all([legacy, ...shards].map((p) => currentWalLsn(p)));
  const pass = await fullPass(legacy, shards, placement, schema);
  const walTo = await Promise.all([legacy, ...shards].map((p) => currentWalLsn(p)));
  const [legacyWal = 0, ...shardWal] = walTo.map((to, i) => Number(to - (walFrom[i] ?? to)));
  const textHash = () => "hashtextextended(x::text, 0)";
  const sameHash = (table: SourceSchema["tables"][number]) =>
    rowHashSql(planTable(table, schema.shardKeyColumn));
  const bare = await timed(() => aggregate(legacy, schema, textHash));
  const same = await timed(() => aggregate(legacy, schema, sameHash));
  const floor = await timed(async () => {
    const [legacyRows] = await Promise.all([
      aggregate(legacy, schema, sameHash),
      ...shards.map((s) => aggregate(s, schema, sameHash)),
    ]);
    return legacyRows ?? 0;
  });
  return {
    rowsVerified: pass.rowsVerified,
    ms: pass.ms,
    rowsPerSecond: (pass.rowsVerified * 1000) / pass.ms,
    mismatchedChunks: pass.mismatchedChunks.length,
    walBytes: { legacy: legacyWal, shards: shardWal },
    bare,
    sameHash: same,
    floor,
  };
}
