// Confirms positions to the slot only once what they stand for is on disk on every target, by the
// targets' own record: their replication origins (apply-origin.ts).
//
// CDC commits on the targets with synchronous_commit = off, as PostgreSQL's own subscriptions do: a
// commit returns before its WAL is flushed, which takes the flush out of the replication lag. The
// price is that a target crash can lose its last commits — so the slot must not be told they are
// done until they are durable. The target's WAL position cannot say that: after a crash and restart
// a flush soon passes any position read before the crash, although the commits behind it are gone
// (that confirmed, and so lost, whole batches). The origin can: each apply transaction carries in
// its commit record the end LSN of the last source transaction it applied, and
// pg_replication_origin_progress(origin, true) flushes the target up to its last such commit and
// returns that source position — after a crash, the last stamped commit that survived.
//
// So a batch is durable once, for every target it wrote to, the origin's flushed position reached
// the stamp that target's transaction carried. A target the batch did not write to does not hold it
// back: it has nothing pending for that range. Batches are confirmed in order, so a position is
// confirmed only when everything before it is durable everywhere.
//
// A batch handed to the apply lanes is recorded before it is applied (target-lanes.ts): it counts
// only once its transactions COMMITTED. PostgreSQL advances an origin on a stamped ABORT too, and
// until the settlement moves it back (origin-settlement.ts) the origin sits at the failed batch's
// stamp with none of its rows: judged by the origin alone, that batch looked durable and was
// confirmed to the slot, past rows no target holds (break-lanes-confirm-abort.test.ts).
export interface PendingBatch {
  /** The source position to confirm once the batch is durable (its confirmableLsn). */
  lsn: bigint;
  /** Per target ordinal that committed something for this batch, the origin stamp it carried. */
  stamps: ReadonlyMap<number, bigint>;
}

interface Pending extends PendingBatch {
  /** Its transactions committed (a batch that failed never is: the origin may hold an abort's stamp). */
  committed: boolean;
}

export class DurableConfirmer {
  private readonly pending: Pending[] = [];
  private checking: Promise<void> | null = null;

  constructor(
    /** The flushed origin position of target `ordinal` (pg_replication_origin_progress(…, true)). */
    private readonly durableOf: (ordinal: number) => Promise<bigint>,
    private readonly confirm: (lsn: bigint) => void,
  ) {}

  /**
   * A batch ending at source position `lsn` goes to the targets in `stamps` (empty: wrote nothing).
   * `committed`, if given, settles once its transactions committed: until it resolves the batch is
   * not confirmed, and if it rejects, never.
   */
  applied(lsn: bigint, stamps: ReadonlyMap<number, bigint> = new Map(), committed?: Promise<void>): void {
    const entry: Pending = { lsn, stamps, committed: committed === undefined };
    this.pending.push(entry);
    committed?.then(
      () => {
        entry.committed = true;
      },
      () => {},
    );
  }

  get waiting(): number {
    return this.pending.length;
  }

  /** Confirms every batch that is durable now. One check at a time; a call during a check waits for it. */
  check(): Promise<void> {
    this.checking ??= this.runCheck().finally(() => {
      this.checking = null;
    });
    return this.checking;
  }

  private async runCheck(): Promise<void> {
    if (this.pending.length === 0) return;
    // Batches applied while the positions are read are judged at the next check.
    const count = this.pending.length;
    const targets = new Set(this.pending.slice(0, count).flatMap((p) => [...p.stamps.keys()]));
    const durable = new Map<number, bigint>();
    await Promise.all([...targets].map(async (t) => durable.set(t, await this.durableOf(t))));
    let upTo: bigint | null = null;
    for (let i = 0; i < count; i++) {
      const head = this.pending[0];
      if (!head?.committed) break;
      const done = [...head.stamps].every(([t, stamp]) => stamp <= (durable.get(t) ?? 0n));
      if (!done) break;
      this.pending.shift();
      upTo = head.lsn;
    }
    if (upTo !== null) this.confirm(upTo);
  }
}
