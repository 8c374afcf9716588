// Confirms positions to the slot only once what they stand for is on disk on every shard.
//
// CDC commits on the shards with synchronous_commit = off, as PostgreSQL's own subscriptions do: a
// commit returns before its WAL is flushed, which takes the flush out of the replication lag. The
// price is that a shard crash can lose the last few hundred milliseconds of commits — so the slot
// must not be told they are done until they are durable. Each applied batch records, per shard, the
// WAL position just after its commit; a batch is confirmed once every shard's flush position passed
// it. A crash before that replays the batch from the slot, and replaying row images is harmless.
export class DurableConfirmer {
  private readonly pending: { lsn: bigint; shardLsns: (bigint | null)[] }[] = [];
  private checking: Promise<void> | null = null;

  constructor(
    /** pg_current_wal_flush_lsn() of shard `ordinal`. */
    private readonly flushLsnOf: (ordinal: number) => Promise<bigint>,
    private readonly confirm: (lsn: bigint) => void,
  ) {}

  /** A batch ending at `lsn` was committed; `shardLsns[i]` is shard i's WAL position after it (null: not written). */
  applied(lsn: bigint, shardLsns: (bigint | null)[]): void {
    this.pending.push({ lsn, shardLsns });
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
    const shards = new Set<number>();
    for (const entry of this.pending) {
      for (const [i, lsn] of entry.shardLsns.entries()) if (lsn !== null) shards.add(i);
    }
    const flushed = new Map<number, bigint>();
    await Promise.all([...shards].map(async (i) => flushed.set(i, await this.flushLsnOf(i))));
    let upTo: bigint | null = null;
    for (;;) {
      const head = this.pending[0];
      if (!head) break;
      const durable = head.shardLsns.every((l, i) => l === null || l <= (flushed.get(i) ?? 0n));
      if (!durable) break;
      this.pending.shift();
      upTo = head.lsn;
    }
    if (upTo !== null) this.confirm(upTo);
  }
}
