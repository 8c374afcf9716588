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
//   one at a time beside the copy, settled before the worker stops, for a few seconds at most):
//   CDC no longer takes the table's guard lock, and VACUUM's lock (SHARE UPDATE EXCLUSIVE) does
//   not conflict with CDC's row writes, so CDC is never blocked. TRUNCATE false: giving empty tail
//   pages back needs a (brief) ACCESS EXCLUSIVE lock, which would.
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

/**
 * VACUUM (ANALYZE) `qualified` (TableInfo.qualified) on every shard, in parallel. `stop` aborted
 * cancels the vacuums still running (pg_cancel_backend): a worker stopping must not wait for a
 * vacuum as long as it waits for a lock (run-slice.ts, stopVacuums).
 */
export async function vacuumAnalyzeOnShards(
  shards: readonly Pick<pg.Pool, "query" | "connect">[],
  qualified: string,
  stop?: AbortSignal,
): Promise<VacuumFailure[]> {
  const settled = await Promise.allSettled(shards.map((s) => vacuumOn(s, vacuumAnalyzeSql(qualified), stop)));
  return settled.flatMap((r, shard) =>
    r.status === "rejected" ? [{ shard, message: (r.reason as Error).message }] : [],
  );
}

async function vacuumOn(pool: Pick<pg.Pool, "query" | "connect">, sql: string, stop?: AbortSignal) {
  if (stop?.aborted) throw new Error("not run: the worker stopped");
  const client = await pool.connect();
  let pid = 0;
  let failed = false;
  // Cancelled from another session of the pool: the vacuum's may be waiting for a lock, where
  // nothing it is sent is read.
  const cancel = () => {
    pool.query("select pg_cancel_backend($1)", [pid]).catch(() => {});
  };
  try {
    pid = (await client.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0]?.pid ?? 0;
    stop?.addEventListener("abort", cancel, { once: true });
    if (stop?.aborted) throw new Error("not run: the worker stopped");
    await client.query(sql);
  } catch (error) {
    failed = true;
    if (stop?.aborted) throw new Error(`cancelled: the worker stopped (${(error as Error).message})`);
    throw error;
  } finally {
    stop?.removeEventListener("abort", cancel);
    // A session a cancel may still reach is not reused (it would cancel someone else's statement),
    // nor one whose statement failed (its connection may be broken).
    client.release(failed || stop?.aborted === true);
  }
}
