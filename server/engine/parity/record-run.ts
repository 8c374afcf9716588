// Recording a parity run's outcome: new open mismatches, the open ones it proved gone, and the
// run's figures — in ONE SQL statement, atomic by itself. Not a Prisma transaction: Prisma closes
// interactive and batch transactions alike after 5 s, so a control plane under load, or a row
// lock held by a repair, made a finished check fail at this very step (seen after 18 s of work).
// Only a lock-free read of the open mismatches happens before it.
//
// The rule that keeps "resolved" honest: an open mismatch is closed only if this run VERIFIED its
// scope — the (table, tenant) on that shard compared equal, or was re-checked to the end — and did
// not confirm the row again. A tenant left unverified (a hot row whose re-check never settled, CDC
// too far behind) keeps its open mismatches open, whatever the re-check saw.
import { db } from "../store/db";
import type { RowDifference } from "./chunk-hash";

export interface UnverifiedScope {
  table: string;
  /** null for a reference table. */
  tenant: string | null;
  shard: number;
  /** Legacy rows in the scope that were not verified. */
  rows: number;
  reason: string;
}

export interface OpenMismatchRef {
  id: bigint;
  tableName: string;
  tenantKey: string | null;
  shardOrdinal: number;
  rowKey: unknown;
}

export const scopeKey = (table: string, tenant: string | null, shard: number) =>
  `${table}|${tenant ?? ""}|${shard}`;
const rowKeyOf = (table: string, shard: number, key: unknown) => `${table}|${shard}|${JSON.stringify(key)}`;

/** The open mismatches this run proved gone (pure; see the rule above). */
export function mismatchesToClose(
  open: readonly OpenMismatchRef[],
  confirmed: readonly RowDifference[],
  coverage: {
    /** Did the run look at this (table, tenant) at all? (A full run looks at every one.) */
    covered: (table: string, tenant: string | null) => boolean;
    unverified: readonly UnverifiedScope[];
  },
): OpenMismatchRef[] {
  const found = new Set(confirmed.map((d) => rowKeyOf(d.table, d.shard, d.key)));
  const unverified = new Set(coverage.unverified.map((u) => scopeKey(u.table, u.tenant, u.shard)));
  return open.filter(
    (m) =>
      coverage.covered(m.tableName, m.tenantKey) &&
      !unverified.has(scopeKey(m.tableName, m.tenantKey, m.shardOrdinal)) &&
      !found.has(rowKeyOf(m.tableName, m.shardOrdinal, m.rowKey)),
  );
}

/** The confirmed differences not already open (pure). */
export function freshMismatches(
  open: readonly OpenMismatchRef[],
  confirmed: readonly RowDifference[],
): RowDifference[] {
  const known = new Set(open.map((m) => rowKeyOf(m.tableName, m.shardOrdinal, m.rowKey)));
  return confirmed.filter((d) => !known.has(rowKeyOf(d.table, d.shard, d.key)));
}

export interface RunFigures {
  rowsVerified: number;
  rowsTotal: number;
  chunksChecked: number;
  chunksMismatched: number;
  tables: unknown[];
}

/** Writes the run's outcome; returns the mismatches it closed and created. */
export async function recordRunOutcome(
  planId: string,
  runId: bigint,
  confirmed: readonly RowDifference[],
  coverage: Parameters<typeof mismatchesToClose>[2],
  figures: RunFigures,
): Promise<{ closed: number; created: number }> {
  const open = await db().parityMismatch.findMany({
    where: { planId, status: "open" },
    select: { id: true, tableName: true, tenantKey: true, shardOrdinal: true, rowKey: true },
  });
  const gone = mismatchesToClose(open, confirmed, coverage);
  const fresh = freshMismatches(open, confirmed);
  const unverified = coverage.unverified.slice(0, 500).map((u) => ({ ...u }));
  await db().$executeRawUnsafe(
    // Data-modifying WITH parts always run to completion, read or not: one statement, one commit.
    `with closed as (
       -- status 'open' again: a repair may have closed one since it was read; leave that one alone.
       update parity_mismatch set status = 'resolved', closed_at = now()
        where id = any($3::bigint[]) and status = 'open'
       returning id
     ), created as (
       insert into parity_mismatch
         (plan_id, run_id, table_name, tenant_key, shard_ordinal, row_key, kind, columns, legacy_values, shard_values)
       select $1::uuid, $2::bigint, f.table_name, f.tenant_key, f.shard_ordinal, f.row_key, f.kind, f.columns,
              f.legacy_values, f.shard_values
         from jsonb_to_recordset($4::jsonb) as f(table_name text, tenant_key text, shard_ordinal int, row_key jsonb,
              kind text, columns jsonb, legacy_values jsonb, shard_values jsonb)
       returning id
     )
     update parity_run
        set status = 'complete', finished_at = now(), heartbeat_at = now(), error = null,
            rows_verified = $5::bigint, rows_total = $6::bigint, chunks_checked = $7::int,
            chunks_mismatched = $8::int, mismatches_confirmed = $9::int, unverified = $10::jsonb,
            tables = $11::jsonb
      where id = $2::bigint`,
    planId,
    runId.toString(),
    gone.map((m) => m.id.toString()),
    JSON.stringify(
      fresh.map((d) => ({
        table_name: d.table,
        tenant_key: d.tenant,
        shard_ordinal: d.shard,
        row_key: d.key,
        kind: d.kind,
        columns: d.columns.map((c) => c.column),
        legacy_values: d.legacyRow,
        shard_values: d.shardRow,
      })),
    ),
    figures.rowsVerified,
    figures.rowsTotal,
    figures.chunksChecked,
    figures.chunksMismatched,
    confirmed.length,
    JSON.stringify(unverified),
    JSON.stringify(figures.tables),
  );
  return { closed: gone.length, created: fresh.length };
}
