// The cutover's drain (docs/cutover.md step 5): wait until a TARGET durably holds every source
// transaction up to a position — the freeze position syncFence returned on the source.
//
// Why the target's own records, and why they get there even when the target is quiet: every apply
// transaction is stamped, in its commit record, with the source position it brings the target to
// (apply-origin.ts); the fence change is a transactional message in the source's WAL, and a stream
// that meets it gives EVERY target a drain marker in the transaction that applies it, rows for it or
// not (change-router.ts): the transaction is stamped, and it upserts the target's drain mark row to
// the fence change's end position (drain-mark.ts). Nothing is inferred from time, from the slot's
// confirmed position (which trails) or from the engine's memory.
//
// Why both the origin and the row: the origin alone can overstate. PostgreSQL advances it on a
// stamped ABORT too, and a COMMIT can fail after the stamp (origin-settlement.ts); until that is
// settled — in the memory of the process that applied, which the drain cannot see — the origin sits
// at the aborted batch's stamp with none of its rows, past the freeze if the batch carried the fence
// change (break-drain-aborted-stamp.test.ts). The row exists only if its transaction committed.
//
// Guaranteed: reached means, read in one statement, the target's mark row of this origin is at or
// past P — the transaction that applied the fence change (or a later one), and with it every source
// transaction before it, committed there — and pg_replication_origin_progress(origin, true) is at or
// past P, which flushed the target past that commit: it survives a crash of the target.
import type pg from "pg";
import { applyOriginName } from "./apply-origin";
import { drainProgressSql } from "./drain-mark";
import { formatLsn, parseLsn } from "./slot";

export interface DrainOutcome {
  /** The target durably holds everything up to `lsn` (origin and committed mark) before the deadline. */
  reached: boolean;
  /** The last origin progress read (null if none could be read: the target did not answer). */
  progress: bigint | null;
  /** The last committed drain mark read (null: none there, or no answer). */
  marked: bigint | null;
}

/** How long one read may wait on the target (a hung one: the deadline still bounds the drain). */
const READ_TIMEOUT_MS = 10_000;

/** The origin's flushed progress and its committed drain mark on `target`, in one statement. */
export async function readDrainProgress(
  target: Pick<pg.Pool, "query">,
  origin: string,
): Promise<{ progress: bigint; marked: bigint | null }> {
  const sql = drainProgressSql(origin);
  const { rows } = await target.query<{ lsn: string; marked: string | null }>({
    text: sql.text,
    values: sql.values,
    query_timeout: READ_TIMEOUT_MS,
  } as pg.QueryConfig);
  const row = rows[0];
  return {
    progress: parseLsn(row?.lsn ?? "0/0"),
    marked: row?.marked == null ? null : parseLsn(row.marked),
  };
}

/**
 * Polls the target until its durable origin progress AND its committed drain mark are at or past
 * `lsn`, or `deadline` (epoch ms) passes. A read that fails (the target restarting, a fence without
 * the mark table yet) is retried until the deadline; the outcome says how far the target got, for
 * the cutover's message.
 */
export async function waitForOriginProgress(
  target: Pick<pg.Pool, "query">,
  origin: string,
  lsn: bigint,
  deadline: number,
  pollMs = 5,
): Promise<DrainOutcome> {
  let progress: bigint | null = null;
  let marked: bigint | null = null;
  for (;;) {
    try {
      ({ progress, marked } = await readDrainProgress(target, origin));
      if (progress >= lsn && marked !== null && marked >= lsn) return { reached: true, progress, marked };
    } catch {
      // The target did not answer this time: keep trying until the deadline.
    }
    const left = deadline - Date.now();
    if (left <= 0) return { reached: false, progress, marked };
    await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, left)));
  }
}

/**
 * Why a drain that did not reach `lsn` fell short, when its origin says otherwise: appended to the
 * cutover's message ("" when the origin itself is short).
 */
export function drainShortfallNote(outcome: DrainOutcome, lsn: bigint): string {
  if (outcome.progress === null || outcome.progress < lsn) return "";
  return ` (its origin is at ${formatLsn(outcome.progress)}, but the transaction that applies the fence change has not committed there${outcome.marked === null ? "" : `: its last drain mark is ${formatLsn(outcome.marked)}`} — an apply transaction that aborted after its stamp may not be settled yet)`;
}

/** The origin forward CDC stamps on shard `ordinal` (legacy's slot → that shard). */
export function forwardOriginName(forwardSlot: string, slotLsn: bigint, shardOrdinal: number): string {
  return applyOriginName(forwardSlot, slotLsn, shardOrdinal);
}

/** The origin a shard's reverse CDC stamps on legacy (its only target, ordinal 0). */
export function reverseOriginName(reverseSlot: string, slotLsn: bigint): string {
  return applyOriginName(reverseSlot, slotLsn, 0);
}
