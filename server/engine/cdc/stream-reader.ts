// The stream part of replication: reads one source server's slot through its publication and hands
// out batches of committed transactions that are safe to route — any source, any direction.
//
// Before a batch leaves the reader:
//   1. every relation in it was checked against the schema snapshot (relation-check.ts), and a
//      relation whose definition changed mid-stream (ALTER TABLE) stops the stream with
//      CdcStopError — nothing of that batch is applied or confirmed;
//   2. each transaction's 32-bit xid is widened to the source's xid8 (the backfill's snapshot
//      guard compares full xids: snapshot-guard.ts);
//   3. transactions our own appliers wrote are left out (loop safety): the server skips every
//      transaction carrying a replication origin when the stream asks for origin 'none'
//      (PostgreSQL 16+), and `skipOrigin` drops the ones whose origin it names. Left out, they
//      still count for the batch's confirmable position.
// A large transaction arrives in pieces (bounded memory); pieces and their completing transaction
// come alone, in order (replication-stream.ts).
import type pg from "pg";
import type { SourceSchema } from "../analysis/introspect";
import { currentXidReference, fullXid } from "../shared/snapshot-guard";
import { guardClient } from "../sql/pools";
import { setSessionRenderingSql } from "../sql/rendering";
import { CdcStopError, type Statement } from "./apply";
import type { Change, Tuple } from "./pgoutput";
import { pgTimestampToIso } from "./pgoutput";
import { formatTypesOn, RelationCheck } from "./relation-check";
import { type CommittedTransaction, ReplicationStream, type TransactionPiece } from "./replication-stream";

export interface StreamReaderOptions {
  /** The source database (where the slot and publication are). */
  url: string;
  /** A pool on the same database: schema checks, xid references, re-reads of rows. */
  source: pg.Pool;
  slot: string;
  publication: string;
  schema: SourceSchema;
  /** 'none': the server leaves out every transaction applied under a replication origin. */
  origin: "any" | "none";
  /** Transactions whose origin this names are left out (origin 'any' streams them). */
  skipOrigin?: (origin: string) => boolean;
  /** How messages name the source ("legacy", "shard 2"). */
  sourceName: string;
  applicationName: string;
  /** A transaction larger than this arrives in pieces of this many changes. */
  maxChangesPerPiece: number;
  /**
   * With nothing new this long, next() hands out an empty batch, so the loop's hooks run on a quiet
   * source too (forward CDC's idle lag tick: idle-lag.ts). Default: wait for news indefinitely.
   */
  idleTimeoutMs?: number;
}

export interface SourceTransaction {
  /** The source's full xid8, as text. */
  xid: string;
  /** Position of its commit record (stray writes are named by it). */
  commitLsn: bigint;
  /** End of its commit record: what the targets' origins are stamped with. */
  endLsn: bigint;
  commitTimeIso: string;
  changes: Change[];
  /** Its earlier changes came as pieces. */
  continued: boolean;
}

export interface SourcePiece {
  xid: string;
  /** Its commit record's position: the transaction's end lies after it. */
  commitLsn: bigint;
  changes: Change[];
}

export interface SourceBatch {
  /** Committed transactions in commit order (none when the batch only advances the position). */
  transactions: SourceTransaction[];
  /** Confirm this once every transaction above is durable on its targets. */
  confirmableLsn: bigint;
  /** Part of a large transaction; it comes alone, and nothing new may be confirmed for it. */
  piece?: SourcePiece;
}

const XID_REFERENCE_EVERY_MS = 60_000;

export class StreamReader {
  private xidReference = 0n;
  private xidReferenceAt = 0;

  private constructor(
    private readonly options: StreamReaderOptions,
    private readonly stream: ReplicationStream,
    /** A source session of the reader's own, with the pinned renderings (re-reads of rows). */
    private readonly session: pg.PoolClient,
    private readonly relations: RelationCheck,
  ) {}

  /** Starts streaming; rejects with ReplicationStreamError when the slot or the server is unusable. */
  static async open(options: StreamReaderOptions): Promise<StreamReader> {
    const stream = await ReplicationStream.start({
      connectionString: options.url,
      slot: options.slot,
      publications: [options.publication],
      applicationName: options.applicationName,
      origin: options.origin,
      // Bounded memory for any transaction size: a large one arrives in pieces, and reading
      // pauses while pieces wait.
      maxChangesPerPiece: options.maxChangesPerPiece,
      maxBufferedChanges: options.maxChangesPerPiece * 4,
    });
    let session: pg.PoolClient | null = null;
    try {
      session = guardClient(await options.source.connect());
      await session.query(setSessionRenderingSql());
      const client = session;
      const relations = new RelationCheck(
        options.schema,
        (pairs) => formatTypesOn(client, pairs),
        options.sourceName,
      );
      const reader = new StreamReader(options, stream, session, relations);
      reader.xidReference = await currentXidReference(session);
      reader.xidReferenceAt = Date.now();
      return reader;
    } catch (error) {
      session?.release(true);
      await stream.stop().catch(() => {});
      throw error;
    }
  }

  /** The next batch (steps 1–3 above done), or null once the stream was stopped. */
  async next(): Promise<SourceBatch | null> {
    const batch = await this.stream.readBatch({
      maxTransactions: 500,
      maxWaitMs: 0,
      idleTimeoutMs: this.options.idleTimeoutMs,
    });
    if (!batch) return null;
    this.refreshXidReference();
    const parts: (CommittedTransaction | TransactionPiece)[] = [
      ...batch.transactions,
      ...(batch.piece ? [batch.piece] : []),
    ];
    // 1.
    await this.relations.verify(
      parts.flatMap((tx) =>
        tx.changes.flatMap((c) =>
          c.kind === "truncate" ? c.relations : c.kind === "message" ? [] : [c.relation],
        ),
      ),
    );
    for (const tx of parts) {
      const changed = tx.relationChanges[0];
      if (changed) {
        throw new CdcStopError(
          `The schema of ${changed.current.schema}.${changed.current.table} changed on ${this.options.sourceName} during the migration ` +
            "(ALTER TABLE). The change was not applied to the targets. Apply the same change to every shard, then cancel and restart the data movement.",
        );
      }
    }
    // 2. + 3.
    const reference = this.xidReference;
    if (batch.piece) {
      const piece = batch.piece;
      // Its completing transaction carries the same origin: it is left out too.
      if (this.skipped(piece.origin)) return { transactions: [], confirmableLsn: batch.confirmableLsn };
      return {
        transactions: [],
        confirmableLsn: batch.confirmableLsn,
        piece: {
          xid: fullXid(piece.xid, reference).toString(),
          commitLsn: piece.commitLsn,
          changes: piece.changes,
        },
      };
    }
    const transactions: SourceTransaction[] = [];
    for (const tx of batch.transactions) {
      if (this.skipped(tx.origin)) continue;
      transactions.push({
        xid: fullXid(tx.xid, reference).toString(),
        commitLsn: tx.commitLsn,
        endLsn: tx.endLsn,
        commitTimeIso: pgTimestampToIso(tx.commitTime),
        changes: tx.changes,
        continued: tx.continued === true,
      });
    }
    return { transactions, confirmableLsn: batch.confirmableLsn };
  }

  private skipped(origin: string | null): boolean {
    return origin !== null && this.options.skipOrigin?.(origin) === true;
  }

  /** The row as the source holds it now (a partial update whose row a target lacks). */
  async readRow(select: Statement): Promise<Tuple | null> {
    return ((await this.session.query<Tuple>(select)).rows[0] as Tuple | undefined) ?? null;
  }

  /** How far the source's WAL has reached this reader: handed out in a batch, or reported by the server as decoded. */
  get receivedLsn(): bigint {
    const stats = this.stream.stats;
    if (stats.serverLsn > stats.deliveredLsn) return stats.serverLsn;
    return stats.deliveredLsn;
  }

  /** Tells the slot everything before `lsn` is durable on the targets. */
  confirm(lsn: bigint): void {
    this.stream.confirm(lsn);
  }

  /** Ends the stream (what was not confirmed is delivered again to the next reader). */
  async stop(): Promise<void> {
    await this.stream.stop().catch(() => {});
  }

  /** Stops, and returns the source session (its settings were changed: it leaves the pool). */
  async close(): Promise<void> {
    await this.stop();
    this.session.release(true);
  }

  /** pgoutput names transactions by 32-bit xid; refresh the epoch reference now and then, off the read path. */
  private refreshXidReference(): void {
    const now = Date.now();
    if (now - this.xidReferenceAt < XID_REFERENCE_EVERY_MS) return;
    this.xidReferenceAt = now;
    currentXidReference(this.options.source).then(
      (reference) => {
        this.xidReference = reference;
      },
      () => {},
    );
  }
}
