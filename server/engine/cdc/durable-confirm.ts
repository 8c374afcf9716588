// Confirms positions to the slot only once what they stand for is on disk on every shard.
//
// CDC commits on the shards with synchronous_commit = off, as PostgreSQL's own subscriptions do: a
// commit returns before its WAL is flushed, which takes the flush out of the replication lag. The
// price is that a shard crash can lose the last few hundred milliseconds of commits — so the slot
// must not be told they are done until they are durable.
//
// Each check reads every shard's WAL insert and flush positions in one query. A batch applied
// before a check began has its commit record behind that check's insert position (the commit
// returned before the query was sent), so the position marks it; a later check that sees the flush
// position past the mark confirms it. Marking by check, not by batch, keeps the apply path to one
// round trip per batch (no position query after each commit), at the cost of confirming up to one
// check later. A crash before confirmation replays the batch from the slot, which is harmless.
//
// The insert position may also cover WAL that no commit asks to flush (hint bits, pruning, another
// session's open transaction), which the WAL writer can leave unflushed while the shard is quiet.
// A mark still not durable after FORCE_FLUSH_AFTER_MS has its shard flushed on purpose (a tiny
// synchronous commit), so the slot never waits on an idle shard.
import type pg from "pg";
import { parseLsn } from "./slot";

export interface ShardWal {
  /** pg_current_wal_insert_lsn(): past every commit that returned before it was read. */
  insert: bigint;
  /** pg_current_wal_flush_lsn(): everything before it is on disk. */
  flush: bigint;
}

const FORCE_FLUSH_AFTER_MS = 1_000;

/**
 * A shard's WAL positions in one query. With `flush`, first a transaction that wrote WAL (a logical
 * message no subscriber reads) commits synchronously on this server ("local": never waiting on a
 * standby), which flushes all WAL inserted before it.
 */
export async function readShardWal(shard: pg.Pool, flush: boolean): Promise<ShardWal> {
  const result: unknown = await shard.query(
    `${flush ? "begin; set local synchronous_commit = local; select pg_logical_emit_message(true, 'shardshift.flush', ''); commit; " : ""}` +
      "select pg_current_wal_insert_lsn()::text as insert, pg_current_wal_flush_lsn()::text as flush",
  );
  // Several statements answer with one result each: the positions are the last.
  const last = (Array.isArray(result) ? result.at(-1) : result) as pg.QueryResult<{
    insert: string;
    flush: string;
  }>;
  const row = last.rows[0];
  return { insert: parseLsn(row?.insert ?? "0/0"), flush: parseLsn(row?.flush ?? "0/0") };
}

interface Pending {
  lsn: bigint;
  /** Ordinals of the shards the batch wrote to. */
  shards: number[];
  /** Per shard, the insert position of the first check after the batch: null until then. */
  marks: Map<number, bigint> | null;
  markedAt: number;
}

export class DurableConfirmer {
  private readonly pending: Pending[] = [];
  private checking: Promise<void> | null = null;

  constructor(
    /** The WAL positions of shard `ordinal`; with `flush`, after making it flush everything inserted so far. */
    private readonly walOf: (ordinal: number, flush: boolean) => Promise<ShardWal>,
    private readonly confirm: (lsn: bigint) => void,
  ) {}

  /** A batch ending at source position `lsn` committed on `shards` (ordinals; empty: wrote nothing). */
  applied(lsn: bigint, shards: number[]): void {
    this.pending.push({ lsn, shards, marks: null, markedAt: 0 });
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
    // Taken before the positions are read: batches applied during the read are marked next time.
    const unmarked = this.pending.filter((p) => p.marks === null);
    const shards = new Set(this.pending.flatMap((p) => p.shards));
    const now = Date.now();
    const stale = new Set(
      this.pending.flatMap((p) => (p.marks && now - p.markedAt >= FORCE_FLUSH_AFTER_MS ? p.shards : [])),
    );
    const wal = new Map<number, ShardWal>();
    await Promise.all([...shards].map(async (i) => wal.set(i, await this.walOf(i, stale.has(i)))));
    for (const p of unmarked) {
      p.marks = new Map(p.shards.map((i) => [i, wal.get(i)?.insert ?? 0n]));
      p.markedAt = now;
    }
    let upTo: bigint | null = null;
    for (;;) {
      const head = this.pending[0];
      if (!head?.marks) break;
      const durable = [...head.marks].every(([i, mark]) => mark <= (wal.get(i)?.flush ?? 0n));
      if (!durable) break;
      this.pending.shift();
      upTo = head.lsn;
    }
    if (upTo !== null) this.confirm(upTo);
  }
}
