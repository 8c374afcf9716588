// The thin runner every replication direction shares: stream → route → apply → confirm.
//
// Per batch (numbered because the order is the correctness argument):
//   1. read a batch of committed transactions, checked and widened (stream-reader.ts)
//   2. route every change to its target(s), keeping commit order within each target and leaving out
//      what a target already holds by its origin (change-router.ts); record what the route found
//      that reaches no target (stray writes: afterRoute) before anything can be confirmed
//   3. hand each target's share to that target's apply lane (target-lanes.ts): a target applies
//      as soon as its previous transaction committed, in one transaction stamped with the last end
//      LSN it covers, never waiting for the other targets; a large transaction in pieces, once
//      every lane is idle, committed whole
//   4. record the batch with the confirmer as it is handed over, in stream order: it tells the
//      slot once every target the batch went to holds its stamp durably (confirmer.ts)
// A crash anywhere before 4's confirm re-delivers the batch; the origins make it skip what landed.
// A target whose apply session ends (its server crashed: its last asynchronous commits may be gone)
// ends the loop at once, even while it waits for the stream, so the restart replays them.
//
// What differs between directions is only which parts are composed (forward-cdc.ts,
// reverse-cdc.ts): the source, the route, the targets, and the hooks below.

import { PressureSlot } from "../shared/replication-pressure";
import type { ApplyOptions } from "./apply";
import type { ChangeRouter } from "./change-router";
import type { Confirmer } from "./confirmer";
import { nowEpochMs, StageTrace } from "./stage-trace";
import type { StreamReader } from "./stream-reader";
import type { TargetAppliers } from "./target-applier";
import { TargetLanes } from "./target-lanes";

export interface ReplicationParts {
  reader: StreamReader;
  router: ChangeRouter;
  appliers: TargetAppliers;
  confirmer: Confirmer;
}

export interface ReplicationHooks {
  /** Checked before every batch: false ends the loop. */
  keepGoing(): boolean;
  /**
   * Runs before every batch is read. Targets may still be applying earlier batches: a hook that
   * needs the apply sessions awaits `idle` first: true once every lane committed and none is
   * open; false while a large transaction holds the sessions between its pieces (try later).
   */
  beforeBatch?(idle: () => Promise<boolean>): Promise<void>;
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
  /**
   * After a batch was applied (not yet confirmed): bookkeeping, off the apply path. `last` is the
   * commit time of its last transaction (none: the batch only moved the position). Only that is
   * kept until every target committed: a slow target may hold thousands of batches behind it, and
   * their changes (the fast targets' shares applied long ago) must not stay in memory with them.
   */
  applied?(last: { commitTimeIso: string } | undefined): void;
}

/** Batches handed to the lanes and not yet committed everywhere, at most (then the loop waits). */
export const MAX_BATCHES_IN_FLIGHT = 10_000;

/** Runs until the reader is stopped or `keepGoing` says no; throws what stopped it otherwise. */
export async function runReplication(parts: ReplicationParts, hooks: ReplicationHooks): Promise<void> {
  const { reader, router, appliers, confirmer } = parts;
  const options: Omit<ApplyOptions, "sessionPrepared" | "originStamp" | "inTransaction"> = {
    guarded: hooks.guarded ?? (() => false),
    readLegacy: (select) => reader.readRow(select),
  };
  const trace = StageTrace.fromEnv();
  // Each target applies as soon as its previous transaction committed (target-lanes.ts).
  const lanes = new TargetLanes(
    appliers,
    options,
    () => hooks.progressed?.(),
    // The loop may be waiting for the stream (a quiet source): wake it to end with the failure.
    () => void reader.stop(),
  );
  // Batches handed over whose `applied` hook has not run yet, oldest first: the hook runs in stream
  // order, once a batch and every batch before it committed (fired as each batch's own targets
  // committed, a fast target's batches ran ahead of an earlier one a slow target held, and the lag
  // sampled from them hid the slow target's: break-lanes-lag-sample.test.ts).
  const unapplied: {
    committed: Promise<void>;
    done: boolean;
    last: { commitTimeIso: string } | undefined;
    readAtMs: number;
    /** It went to some target: a batch routed nowhere tells background work nothing. */
    delivered: boolean;
    /** When its last transaction committed on the source (NaN: none); see PressureSlot.held. */
    commitMs: number;
  }[] = [];
  // How late this stream runs, for the background work beside it (replication-pressure.ts).
  const pressure = PressureSlot.claim();
  // When the first piece of the large transaction being applied was read (0: none). Its pieces are
  // read and not committed until the transaction that completes it commits, but never enter
  // `unapplied`: without this, a stream minutes into a large transaction read as on time
  // (break-pressure-large.test.ts).
  let largeReadAtMs = 0;
  const runAppliedHooks = () => {
    let newest: { commitTimeIso: string } | undefined;
    const now = Date.now();
    while (unapplied[0]?.done) {
      // Shifted first: `hooks.applied?.(…)` would not evaluate its argument without a hook.
      const { last, readAtMs, delivered } = unapplied.shift() as (typeof unapplied)[number];
      // Lateness counts only what reached a target. A batch routed nowhere (a reverse stream
      // reading a backfill's rows for tenants its shard does not own) is late by the load of that
      // same backfill, and counting it held the backfill at a quarter of its rate (the bench).
      if (delivered) {
        newest = last ?? newest;
        pressure.committed(readAtMs, now);
      }
      hooks.applied?.(last);
    }
    if (newest) pressure.applied(Date.parse(newest.commitTimeIso), now);
    const oldest = unapplied[0];
    pressure.held(oldest?.readAtMs ?? largeReadAtMs, oldest?.commitMs);
  };
  // A target whose session is lost (its server crashed) may have lost its last asynchronous
  // commits: end now, waking a wait for the stream, so the restart replays them from the slot.
  let lost: Error | null = null;
  appliers.onLost((error) => {
    lost ??= error;
    void reader.stop();
  });
  try {
    await loop();
    await lanes.drain();
  } catch (error) {
    if (!lost) throw error;
  } finally {
    // Nothing may still be inside a target transaction when the caller closes the sessions.
    await lanes.drain().catch(() => {});
    trace?.flush();
    pressure.release();
  }
  if (lost) throw lost;

  async function loop() {
    while (hooks.keepGoing() && !lost) {
      await lanes.room();
      // Bounded: a target slow to commit must not let the others run ahead without limit (each
      // batch in flight is held by the confirmer and the in-order hooks until it committed).
      while (unapplied.length >= MAX_BATCHES_IN_FLIGHT) {
        await unapplied[0]?.committed.catch(() => {});
        await lanes.room();
      }
      await hooks.beforeBatch?.(async () => {
        await lanes.drain();
        return !appliers.holdsLarge;
      });
      // 1.
      const batch = await reader.next();
      if (!batch) return;
      const readAt = trace ? nowEpochMs() : 0;
      const readAtMs = Date.now();
      // 2. + 3. for a piece of a large transaction: into the targets' open transactions, once
      // every lane committed what came before it.
      if (batch.piece) {
        await lanes.drain();
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
        // Held from the first piece that goes to a target (one routed nowhere holds nothing).
        if (largeReadAtMs === 0 && perTarget.some((statements) => statements.length > 0)) {
          largeReadAtMs = readAtMs;
          if (unapplied.length === 0) pressure.held(readAtMs);
        }
        await hooks.afterRoute?.();
        await appliers.applyPiece(perTarget, options);
        continue;
      }
      const last = batch.transactions.at(-1);
      let stamps = new Map<number, bigint>();
      let committed: Promise<void> = lanes.settled();
      if (appliers.holdsLarge && last && !last.continued) {
        throw new Error("a large transaction's pieces arrived without its end");
      }
      if (last) {
        const stamp = { lsn: last.endLsn, commitTimeIso: last.commitTimeIso };
        if (last.continued) {
          // A transaction that completes pieces arrives alone: it commits the open target transactions.
          await lanes.drain();
          const perTarget = router.route(batch.transactions, appliers.appliedUpTo());
          await hooks.afterRoute?.();
          stamps = await appliers.commitLarge(perTarget, stamp, options);
          if (stamps.size > 0) hooks.progressed?.();
        } else {
          const perTarget = router.route(batch.transactions, appliers.appliedUpTo());
          await hooks.afterRoute?.();
          ({ stamps, committed } = lanes.enqueue(perTarget, stamp));
        }
      }
      // 4. In stream order, as the batch is handed to the lanes: the confirmer confirms it only
      // once its transactions committed and every target it went to holds its stamp durably (an
      // aborted stamped COMMIT leaves the origin at its stamp until it is settled back).
      confirmer.applied(batch.confirmableLsn, stamps, committed);
      // Only what the hooks need: not the batch, whose changes would stay reachable until its
      // slowest target committed (break-lanes-retention.test.ts).
      const commitTimes = trace && stamps.size > 0 ? batch.transactions.map((tx) => tx.commitTimeIso) : null;
      const lastCommit = last ? { commitTimeIso: last.commitTimeIso } : undefined;
      // A large transaction's completing batch holds since its first piece was read.
      const entry = {
        committed,
        done: false,
        last: lastCommit,
        readAtMs: largeReadAtMs || readAtMs,
        delivered: stamps.size > 0,
        commitMs: last ? Date.parse(last.commitTimeIso) : Number.NaN,
      };
      if (last?.continued) largeReadAtMs = 0;
      if (unapplied.length === 0) pressure.held(entry.readAtMs, entry.commitMs);
      unapplied.push(entry);
      committed.then(
        () => {
          if (trace && commitTimes) trace.record(commitTimes, readAt, nowEpochMs());
          entry.done = true;
          runAppliedHooks();
        },
        () => {}, // a lane's failure ends the loop (lanes.room / lanes.drain)
      );
    }
  }
}
