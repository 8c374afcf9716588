// After a table's backfill: VACUUM (ANALYZE) it on every shard.
//
// Why: a freshly copied table has no planner statistics, no visibility map and unset hint bits.
// Left alone, the first autovacuum and auto-analyze of every shard table land later, during live
// traffic (after cutover, when the shard serves the tenants), each scanning the whole table; and
// until then the planner guesses. Done here, the work happens while the shard has no readers yet.
//
// Invariants:
// - Outside any transaction (VACUUM cannot run in one), on the worker's shard pools, after the
//   table is marked done and the slice released the task's lock (a vacuum is not a copier: a pause
//   must not wait for it, nor the plan's next table: the slice returns and its worker's vacuums run
//   one at a time beside the copy, settled before the worker stops): CDC no longer takes the table's guard lock, and VACUUM's lock (SHARE
//   UPDATE EXCLUSIVE) does not conflict with CDC's row writes, so CDC is never blocked. TRUNCATE
//   false: giving empty tail pages back needs a (brief) ACCESS EXCLUSIVE lock, which would.
// - Best effort: a failure is returned (the caller records it as a warning), never thrown — the
//   copy is complete and correct without it; autovacuum does the same work later.
import type pg from "pg";

/** One shard's failure: its ordinal and the server's message. */
export interface VacuumFailure {
  shard: number;
  message: string;
}

export function vacuumAnalyzeSql(qualified: string): string {
  return `vacuum (analyze, truncate false) ${qualified}`;
}

/** VACUUM (ANALYZE) `qualified` (TableInfo.qualified) on every shard, in parallel. */
export async function vacuumAnalyzeOnShards(
  shards: readonly Pick<pg.Pool, "query">[],
  qualified: string,
): Promise<VacuumFailure[]> {
  const settled = await Promise.allSettled(shards.map((s) => s.query(vacuumAnalyzeSql(qualified))));
  return settled.flatMap((r, shard) =>
    r.status === "rejected" ? [{ shard, message: (r.reason as Error).message }] : [],
  );
}
