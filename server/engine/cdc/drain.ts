// The cutover's drain (docs/cutover.md step 5): wait until a TARGET durably holds every source
// transaction up to a position — the freeze position syncFence returned on the source.
//
// Why the target's origin, and why it gets there even when the target is quiet: every apply
// transaction is stamped, in its commit record, with the source position it brings the target to
// (apply-origin.ts); the fence change is a transactional message in the source's WAL, and a stream
// that meets it stamps EVERY target with that transaction (a drain marker, change-router.ts), rows
// for it or not. So "the target holds everything below P" is exactly
// pg_replication_origin_progress(origin, true) >= P on the target: read with flush = true, it is
// durable there, not merely sent or applied asynchronously. Nothing is inferred from time, from the
// slot's confirmed position (which trails) or from the engine's memory.
import type pg from "pg";
import { applyOriginName } from "./apply-origin";
import { readOriginProgress } from "./target-applier";

export interface DrainOutcome {
  /** The target's durable progress reached `lsn` before the deadline. */
  reached: boolean;
  /** The last progress read (null if none could be read: the target did not answer). */
  progress: bigint | null;
}

/**
 * Polls the target's durable origin progress until it is at or past `lsn`, or `deadline` (epoch
 * ms) passes. A read that fails (the target restarting) is retried until the deadline; the
 * outcome says how far the target got, for the cutover's message.
 */
export async function waitForOriginProgress(
  target: pg.Pool,
  origin: string,
  lsn: bigint,
  deadline: number,
  pollMs = 5,
): Promise<DrainOutcome> {
  let progress: bigint | null = null;
  for (;;) {
    try {
      progress = await readOriginProgress(target, origin);
      if (progress >= lsn) return { reached: true, progress };
    } catch {
      // The target did not answer this time: keep trying until the deadline.
    }
    const left = deadline - Date.now();
    if (left <= 0) return { reached: false, progress };
    await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, left)));
  }
}

/** The origin forward CDC stamps on shard `ordinal` (legacy's slot → that shard). */
export function forwardOriginName(forwardSlot: string, slotLsn: bigint, shardOrdinal: number): string {
  return applyOriginName(forwardSlot, slotLsn, shardOrdinal);
}

/** The origin a shard's reverse CDC stamps on legacy (its only target, ordinal 0). */
export function reverseOriginName(reverseSlot: string, slotLsn: bigint): string {
  return applyOriginName(reverseSlot, slotLsn, 0);
}
