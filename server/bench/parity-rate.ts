// Parity speed: a full check of the data (in-database chunk hashes on legacy and every shard,
// compared per tenant) against a bare in-database hash aggregate over the same tables on legacy
// alone — the least any check must do.
import type pg from "pg";
import type { SourceSchema } from "@/server/engine/analysis/introspect";
import { fullPass } from "@/server/engine/parity/chunk-hash";
import { withParitySession } from "@/server/engine/parity/session";
import type { Placement } from "@/server/engine/router/placement";

export interface ParityRate {
  rowsVerified: number;
  ms: number;
  rowsPerSecond: number;
  mismatchedChunks: number;
  bare: { rows: number; ms: number; rowsPerSecond: number };
}

export async function measureParityRate(
  legacy: pg.Pool,
  shards: readonly pg.Pool[],
  placement: Placement,
  schema: SourceSchema,
): Promise<ParityRate> {
  const pass = await fullPass(legacy, shards, placement, schema);
  const bareStart = performance.now();
  let bareRows = 0;
  await withParitySession(legacy, async (client) => {
    for (const table of schema.tables) {
      const { rows } = await client.query<{ n: string }>(
        `select count(*)::text as n, sum(hashtextextended(x::text, 0)) from ${table.qualified} x`,
      );
      bareRows += Number(rows[0]?.n ?? 0);
    }
  });
  const bareMs = performance.now() - bareStart;
  return {
    rowsVerified: pass.rowsVerified,
    ms: pass.ms,
    rowsPerSecond: (pass.rowsVerified * 1000) / pass.ms,
    mismatchedChunks: pass.mismatchedChunks.length,
    bare: { rows: bareRows, ms: bareMs, rowsPerSecond: (bareRows * 1000) / bareMs },
  };
}
