// The thin runner every replication direction shares: stream → route → apply → confirm.
//
// Per batch (numbered because the order is the correctness argument):
//   1. read a batch of committed transactions, checked and widened (stream-reader.ts)
//   2. route every change to its target(s), keeping commit order within each target and leaving out
//      what a target already holds by its origin (change-router.ts); record what the route found
//      that reaches no target (stray writes: afterRoute) before anything can be confirmed
//   3. apply each target's share in one target transaction stamped with the batch's last end LSN,
//      targets in parallel (target-applier.ts); a large transaction in pieces, committed whole
//   4. record the batch as applied: the confirmer tells the slot once every target that wrote
//      holds it durably (confirmer.ts)
// A crash anywhere before 4's confirm re-delivers the batch; the origins make it skip what landed.
// A target whose apply session ends (its server crashed: its last asynchronous commits may be gone)
// ends the loop at once, even while it waits for the stream, so the restart replays them.
//
// What differs between directions is only which parts are composed (forward-cdc.ts,
// reverse-cdc.ts): the source, the route, the targets, and the hooks below.
import type { ApplyOptions } from "./apply";
import type { ChangeRouter } from "./change-router";
import type { Confirmer } from "./confirmer";
import { nowEpochMs, StageTrace } from "./stage-trace";
import type { SourceBatch, SourceTransaction, StreamReader } from "./stream-reader";
import type { TargetAppliers } from "./target-applier";

export interface ReplicationParts {
  reader: StreamReader;
  router: ChangeRouter;
  appliers: TargetAppliers;
  confirmer: Confirmer;
}

export interface ReplicationHooks {
  /** Checked before every batch: false ends the loop. */
  keepGoing(): boolean;
  /** Runs between batches (no target transaction open). */
  beforeBatch?(): Promise<void>;
  /** Whether writes to a table take the backfill's guard lock (forward CDC while a table is copied). */
  guarded?(relation: string): boolean;
  /**
   * After a batch (or piece) was routed, before any of it is applied: what the route learned that
   * must be recorded before the batch can be confirmed (the ownership route's stray writes, which
   * reach no target, so nothing would replay them once the slot moved past).
   */
  afterRoute?(): Promise<void>;
  /** A target committed something it applied. */
  progressed?(): void;
  /** After a batch was applied (not yet confirmed): bookkeeping, off the apply path. */
  applied?(batch: SourceBatch, last: SourceTransaction | undefined): void;
}

/** Runs until the reader is stopped or `keepGoing` says no; throws what stopped it otherwise. */
export async function runReplication(parts: ReplicationParts, hooks: ReplicationHooks): Promise<void> {
  const { reader, router, appliers, confirmer } = parts;
  const options: Omit<ApplyOptions, "sessionPrepared" | "originStamp" | "inTransaction"> = {
    guarded: hooks.guarded ?? (() => false),
    readLegacy: (select) => reader.readRow(select),
  };
  const trace = StageTrace.fromEnv();
  // A target whose session is lost (its server crashed) may have lost its last asynchronous
  // commits: end now, waking a wait for the stream, so the restart replays them from the slot.
  let lost: Error | null = null;
  appliers.onLost((error) => {
    lost ??= error;
    void reader.stop();
  });
  try {
    await loop();
  } finally {
    trace?.flush();
  }
  if (lost) throw lost;

  async function loop() {
    while (hooks.keepGoing() && !lost) {
      await hooks.beforeBatch?.();
      // 1.
      const batch = await reader.next();
      if (!batch) return;
      const readAt = trace ? nowEpochMs() : 0;
      // 2. + 3. for a piece of a large transaction: into the targets' open transactions.
      if (batch.piece) {
        const piece = batch.piece;
        // Applied on a target iff its origin is past the commit record (stamps are end LSNs).
        const perTarget = router.route(
          [
            {
              xid: piece.xid,
              commitLsn: piece.commitLsn,
              endLsn: piece.commitLsn + 1n,
              changes: piece.changes,
            },
          ],
          appliers.appliedUpTo(),
        );
        await hooks.afterRoute?.();
        await appliers.applyPiece(perTarget, options);
        continue;
      }
      const last = batch.transactions.at(-1);
      let wrote = new Map<number, bigint>();
      if (appliers.holdsLarge && last && !last.continued) {
        throw new Error("a large transaction's pieces arrived without its end");
      }
      if (last) {
        const stamp = { lsn: last.endLsn, commitTimeIso: last.commitTimeIso };
        const perTarget = router.route(batch.transactions, appliers.appliedUpTo());
        await hooks.afterRoute?.();
        // A transaction that completes pieces arrives alone: it commits the open target transactions.
        wrote = last.continued
          ? await appliers.commitLarge(perTarget, stamp, options)
          : await appliers.apply(perTarget, stamp, options);
      }
      if (trace && wrote.size > 0)
        trace.record(
          batch.transactions.map((tx) => tx.commitTimeIso),
          readAt,
          nowEpochMs(),
        );
      // Progress means a target committed something: a confirm alone does not (on a busy server the
      // idle position moves with other databases' WAL while the same transaction keeps failing).
      if (wrote.size > 0) hooks.progressed?.();
      // 4.
      confirmer.applied(batch.confirmableLsn, wrote);
      hooks.applied?.(batch, last);
    }
  }
}
