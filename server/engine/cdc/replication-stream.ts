// A typed pgoutput change stream from one logical replication slot, delivered as batches of
// committed transactions that the consumer applies and then confirms.
//
// Why plain `pg` and not `pg-logical-replication`: that library (2.5.0) acknowledges every message
// as it arrives and again on a 10 s timer (both before we applied anything), adds 1 to the LSNs it
// reports, does not answer the server's keepalives, parses values through pg's type parsers
// (jsonb → object, timestamptz → Date without microseconds), reports unchanged TOAST values as
// `undefined`, and ends the stream by dropping the socket. Turning all of that off leaves only the
// ~20 lines of connection wiring it would share with this file, so we speak the protocol directly:
// pg's Client opens the `replication=database` connection and parses the frames; CopyData payloads
// arrive on `client.connection`'s 'copyData' events and our replies go out as CopyData chunks.
//
// Invariants:
// - Nothing is acknowledged unless the consumer called confirm(lsn). Every standby status update
//   (keepalive replies, the periodic one, the one on stop) reports write = flush = apply = the last
//   confirmed LSN, so after a crash the slot resumes at or before the last durable change: the
//   worst case is re-delivery, never a gap.
// - confirm() refuses an LSN beyond what the stream delivered: confirming unseen WAL would skip it.
// - Transactions are delivered whole, in commit order, once their Commit arrived (protocol v1 sends
//   a transaction only after it committed, so nothing uncommitted is ever seen).
// - A batch's confirmableLsn covers exactly the transactions in it (plus, when the stream is idle,
//   the position the server says it has decoded up to, so an idle or filtered slot still advances
//   and does not retain WAL forever).
// - Reading pauses (socket backpressure) while too many committed transactions wait for the
//   consumer; status updates keep flowing meanwhile, so wal_sender_timeout does not fire.
// - One stream per slot: the server enforces it (SQLSTATE 55006) and we say so in plain words.
// - Resumable: a new stream on the slot starts at max(startLsn, the slot's confirmed_flush_lsn); with
//   startLsn 0/0 that is simply where the last consumer's confirmations ended.
//
// Lifecycle: starting → streaming → stopping → stopped, or → failed from any of the first three.
import pg from "pg";
import { describeConnectionError } from "@/server/engine/sql/connect";
import {
  type Change,
  nowAsPgTimestamp,
  PgoutputDecoder,
  type PgoutputMessage,
  PgoutputProtocolError,
  type Relation,
} from "./pgoutput";
import { assertSlotName, formatLsn, parseLsn } from "./slot";

export interface ReplicationStreamOptions {
  /** The source database (the one the slot and publication were created in). */
  connectionString: string;
  slot: string;
  publications: readonly string[];
  /**
   * Where to resume. 0n (the default) means "from the slot's confirmed_flush_lsn": the server
   * never goes back before that, and skips every transaction that committed before the given LSN.
   * Pass the endLsn of the last transaction durable on the targets (your own checkpoint) to resume
   * exactly after it.
   */
  startLsn?: bigint;
  /** How often to send an unprompted status update. Keep it well under wal_sender_timeout. Default 10 s. */
  statusIntervalMs?: number;
  /**
   * Ask the server to end this connection after this long without a reply from us (sets
   * wal_sender_timeout for this session only). Default: the server's setting (60 s unless changed).
   */
  walSenderTimeoutMs?: number;
  /**
   * 'none' asks the server to skip transactions that carry a replication origin, i.e. that a
   * replication apply process wrote (PostgreSQL 16+). Two-way CDC uses it so changes applied by the
   * reverse stream do not loop back. Default 'any'.
   */
  origin?: "any" | "none";
  /**
   * Ask for transactional logical messages (pgoutput `messages`), delivered as changes of kind
   * 'message' in their transaction. Default true: the fence's ownership changes travel this way.
   */
  messages?: boolean;
  /** Pause reading once this many committed transactions wait for the consumer. Default 1,000. */
  maxBufferedTransactions?: number;
  /** …or once this many changes wait for the consumer. Default 100,000. */
  maxBufferedChanges?: number;
  /**
   * Bounded memory for any transaction size: once an open transaction holds this many changes,
   * they are handed out as a TransactionPiece before its commit arrives (protocol v1 sends only
   * committed transactions, so a piece is never rolled back). Default: whole transactions only.
   */
  maxChangesPerPiece?: number;
  applicationName?: string;
  connectTimeoutMs?: number;
  /** How long stop() waits for the server to end the COPY before closing the socket. Default 5 s. */
  stopTimeoutMs?: number;
}

/** A relation id that was announced again with different columns (or identity) mid-stream. */
export interface RelationChange {
  previous: Relation;
  current: Relation;
}

export interface CommittedTransaction {
  xid: number;
  /** Position of the transaction's commit record. */
  commitLsn: bigint;
  /** End of the commit record: the LSN to confirm once this transaction is durable on the targets. */
  endLsn: bigint;
  /** Microseconds since 2000-01-01 UTC, exactly as the server sent it (pgTimestampToIso renders it). */
  commitTime: bigint;
  /** The replication origin the transaction was applied with, or null for ordinary writes. */
  origin: string | null;
  changes: Change[];
  /** Its earlier changes were handed out as pieces (TransactionPiece); `changes` holds the rest. */
  continued?: boolean;
  /**
   * Relations whose definition changed before this transaction's changes (ALTER TABLE on the source).
   * Non-empty means the changes below use the new columns: a consumer that cannot follow schema
   * changes must stop here without applying or confirming this transaction.
   */
  relationChanges: RelationChange[];
}

/** Part of a large committed transaction, handed out before its commit arrived (in order). */
export interface TransactionPiece {
  xid: number;
  /** The replication origin the transaction was applied with, or null for ordinary writes. */
  origin: string | null;
  /** Position of the transaction's commit record (from its Begin): its end LSN lies after it. */
  commitLsn: bigint;
  commitTime: bigint;
  changes: Change[];
  relationChanges: RelationChange[];
}

export interface TransactionBatch {
  /** Committed transactions in commit order; empty when the batch only advances an idle stream. */
  transactions: CommittedTransaction[];
  /**
   * Confirm this once every transaction above is durable on the targets. It is the last
   * transaction's endLsn, or further when the server reported that nothing else committed before it.
   */
  confirmableLsn: bigint;
  /**
   * Set on a batch that carries part of a large transaction (and no transactions): apply it inside
   * that transaction's target transactions, and commit them with the transaction that follows
   * (`continued`). Nothing new may be confirmed for it.
   */
  piece?: TransactionPiece;
}

export interface BatchLimits {
  /** Close the batch at this many transactions. Default 100. */
  maxTransactions?: number;
  /** Close the batch once it holds this many changes (a single transaction is never split). Default 10,000. */
  maxChanges?: number;
  /** Close the batch this long after its oldest transaction arrived. Default 50 ms. */
  maxWaitMs?: number;
  /**
   * Resolve with an empty batch (nothing new to confirm) after this long without any news, so a
   * worker loop can heartbeat or check for cancellation. Default: wait indefinitely.
   */
  idleTimeoutMs?: number;
}

export type ReplicationStreamState = "starting" | "streaming" | "stopping" | "stopped" | "failed";

export type ReplicationStreamErrorReason =
  | "connection-failed"
  | "connection-lost"
  | "slot-missing"
  | "slot-unusable"
  | "slot-in-use"
  | "publication-missing"
  | "protocol"
  | "server";

export class ReplicationStreamError extends Error {
  readonly reason: ReplicationStreamErrorReason;
  /** For 'slot-in-use': the server process that holds the slot. */
  readonly pid: number | null;

  constructor(
    reason: ReplicationStreamErrorReason,
    message: string,
    options: { cause?: unknown; pid?: number | null } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = "ReplicationStreamError";
    this.reason = reason;
    this.pid = options.pid ?? null;
  }
}

export interface ReplicationStreamStats {
  state: ReplicationStreamState;
  /** The last LSN the consumer confirmed (what the server has been told is flushed). */
  confirmedLsn: bigint;
  /** The highest LSN handed to the consumer in a batch. */
  deliveredLsn: bigint;
  /** The position the server last said it has decoded up to (keepalive); lag = this − confirmedLsn. */
  serverLsn: bigint;
  bufferedTransactions: number;
  paused: boolean;
  keepalivesAnswered: number;
  statusUpdatesSent: number;
}

/** The parts of pg's Connection we use beyond its public typings. */
interface CopyBothConnection {
  stream: { pause(): void; resume(): void };
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  on(event: "copyData", listener: (message: { chunk: Buffer }) => void): void;
  once(event: "replicationStart", listener: () => void): void;
}

interface OpenTransaction {
  xid: number;
  finalLsn: bigint;
  commitTime: bigint;
  origin: string | null;
  changes: Change[];
  relationChanges: RelationChange[];
  pieces: number;
}

interface Queued {
  transaction?: CommittedTransaction;
  piece?: TransactionPiece;
  arrivedAt: number;
}

const XLOG_DATA = 0x77; // 'w'
const PRIMARY_KEEPALIVE = 0x6b; // 'k'
const XLOG_DATA_HEADER_BYTES = 25; // 'w' + dataStart + walEnd + sendTime

/**
 * The walsender renders every value with its own session settings, and apply writes that text into
 * a shard whose settings may differ: pin the renderings to ones every server reads back
 * unambiguously (ISO dates, UTC offsets, round-trip floats, hex bytea).
 */
function sessionOptions(walSenderTimeoutMs: number | undefined): string {
  const settings = [
    "DateStyle=ISO,YMD",
    "TimeZone=UTC",
    "IntervalStyle=postgres",
    "extra_float_digits=3",
    "bytea_output=hex",
  ];
  if (walSenderTimeoutMs !== undefined) settings.push(`wal_sender_timeout=${Math.round(walSenderTimeoutMs)}`);
  return settings.map((setting) => `-c ${setting}`).join(" ");
}

function sqlState(error: unknown): string | undefined {
  return error instanceof Error && "code" in error && typeof error.code === "string" ? error.code : undefined;
}

/** A string literal for the replication command grammar, which knows only '…' with '' doubling. */
function replicationLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

export class ReplicationStream {
  readonly slot: string;
  private readonly options: ReplicationStreamOptions;
  private readonly decoder = new PgoutputDecoder();
  private client: pg.Client | null = null;
  private connection: CopyBothConnection | null = null;
  private copyEnded: Promise<void> = Promise.resolve();
  private statusTimer: NodeJS.Timeout | null = null;

  private _state: ReplicationStreamState = "starting";
  private failure: ReplicationStreamError | null = null;

  private open: OpenTransaction | null = null;
  /** Relation changes seen outside a transaction; they belong to the next one. */
  private pendingRelationChanges: RelationChange[] = [];
  private readonly queue: Queued[] = [];
  private queuedChanges = 0;
  private lastQueuedEndLsn = 0n;
  private paused = false;

  /** Highest keepalive position received while no transaction was open, and when. */
  private idleLsn = 0n;
  private idleSince = 0;
  private serverLsn = 0n;

  private confirmedLsn = 0n;
  private deliveredLsn = 0n;
  private keepalivesAnswered = 0;
  private statusUpdatesSent = 0;

  private waiter: (() => void) | null = null;
  private reading = false;

  private constructor(options: ReplicationStreamOptions) {
    assertSlotName(options.slot);
    if (options.publications.length === 0) {
      throw new Error(`the CDC stream on slot "${options.slot}" needs at least one publication`);
    }
    this.slot = options.slot;
    this.options = options;
  }

  /**
   * Connects and starts streaming. Resolves once the server accepted START_REPLICATION; rejects with
   * a ReplicationStreamError when the slot is missing, in use, or unusable, or the server is down.
   */
  static async start(options: ReplicationStreamOptions): Promise<ReplicationStream> {
    const stream = new ReplicationStream(options);
    try {
      await stream.connectAndStart();
    } catch (error) {
      stream._state = "failed";
      await stream.closeClient();
      throw error;
    }
    return stream;
  }

  get state(): ReplicationStreamState {
    return this._state;
  }

  get stats(): ReplicationStreamStats {
    return {
      state: this._state,
      confirmedLsn: this.confirmedLsn,
      deliveredLsn: this.deliveredLsn,
      serverLsn: this.serverLsn,
      bufferedTransactions: this.queue.length,
      paused: this.paused,
      keepalivesAnswered: this.keepalivesAnswered,
      statusUpdatesSent: this.statusUpdatesSent,
    };
  }

  private async connectAndStart(): Promise<void> {
    const { connectionString, walSenderTimeoutMs } = this.options;
    const timeoutMs = this.options.connectTimeoutMs ?? 10_000;
    // 1. Open a logical replication connection: `replication: 'database'` lets it run both SQL
    //    (simple protocol only) and replication commands. @types/pg does not declare the option.
    const config: pg.ClientConfig & { replication: "database" } = {
      connectionString,
      replication: "database",
      application_name: this.options.applicationName ?? `shardshift-cdc-${this.slot}`,
      connectionTimeoutMillis: timeoutMs,
      options: sessionOptions(walSenderTimeoutMs),
    };
    const client = new pg.Client(config);
    this.client = client;
    // Without an 'error' listener a dropped socket would crash the process instead of failing the stream.
    client.on("error", (error) => this.fail(this.describeFailure(error)));
    try {
      await client.connect();
    } catch (error) {
      throw new ReplicationStreamError(
        "connection-failed",
        `${describeConnectionError(error, connectionString, timeoutMs)} (CDC stream on slot "${this.slot}")`,
        { cause: error },
      );
    }

    // 2. Check the slot before streaming, so its problems get sentences rather than server codes,
    //    and learn where the slot will resume (what we may report as flushed before any confirm).
    this.confirmedLsn = await this.inspectSlot(client);
    const startLsn = this.options.startLsn ?? 0n;
    if (startLsn > this.confirmedLsn) this.confirmedLsn = startLsn;
    this.deliveredLsn = this.confirmedLsn;

    // 3. START_REPLICATION. The server answers CopyBothResponse ('replicationStart') and then streams
    //    CopyData until either side sends CopyDone; the query itself settles only when the COPY ends.
    // pg's Connection typings lack the copy-both half (sendCopyFromChunk, the copyData event).
    const connection = client.connection as unknown as CopyBothConnection;
    this.connection = connection;
    connection.on("copyData", ({ chunk }) => this.onCopyData(chunk));
    // The state flips inside the event, not after the await below: CopyData that arrived in the same
    // socket read as CopyBothResponse is dispatched before any awaiting code resumes.
    const started = new Promise<void>((resolve) =>
      connection.once("replicationStart", () => {
        if (this._state === "starting" && this.failure === null) this._state = "streaming";
        resolve();
      }),
    );
    const copy = client.query(this.startReplicationCommand(startLsn));
    this.copyEnded = copy.then(
      () => this.onCopyEnded(),
      (error: unknown) => this.fail(this.describeFailure(error)),
    );
    await Promise.race([started, copy]).catch((error: unknown) => {
      throw this.describeFailure(error);
    });
    if (this.failure !== null) throw this.failure;
    if (this._state !== "streaming") {
      throw new ReplicationStreamError(
        "protocol",
        `the server answered START_REPLICATION on slot "${this.slot}" without starting a stream; check that the slot is logical`,
      );
    }

    // 4. Report our (unchanged) position periodically: the server ends a connection that stays
    //    silent for wal_sender_timeout, whether or not we have anything new to confirm.
    this.statusTimer = setInterval(() => this.sendStatus(false), this.options.statusIntervalMs ?? 10_000);
    this.sendStatus(false);
  }

  private async inspectSlot(client: pg.Client): Promise<bigint> {
    const result = await client.query<{
      plugin: string | null;
      slot_type: string;
      database: string | null;
      current_database: string;
      wal_status: string | null;
      confirmed_flush_lsn: string | null;
    }>(
      `select plugin, slot_type, database, current_database(), wal_status,
              confirmed_flush_lsn::text as confirmed_flush_lsn
       from pg_replication_slots where slot_name = ${replicationLiteral(this.slot)}`,
    );
    const row = result.rows[0];
    if (row === undefined) {
      throw new ReplicationStreamError(
        "slot-missing",
        `replication slot "${this.slot}" does not exist on this server: create it (createSlot) before starting the CDC stream`,
      );
    }
    if (row.slot_type !== "logical" || row.plugin !== "pgoutput") {
      throw new ReplicationStreamError(
        "slot-unusable",
        `replication slot "${this.slot}" is a ${row.slot_type} slot with plugin ${row.plugin ?? "none"}; ` +
          "the CDC stream needs a logical slot using pgoutput: drop it and create it with createSlot",
      );
    }
    if (row.database !== row.current_database) {
      throw new ReplicationStreamError(
        "slot-unusable",
        `replication slot "${this.slot}" belongs to database "${row.database}", but the stream connected to ` +
          `"${row.current_database}": connect to the slot's database`,
      );
    }
    if (row.wal_status === "lost") {
      throw new ReplicationStreamError(
        "slot-unusable",
        `replication slot "${this.slot}" has lost WAL it needed (max_slot_wal_keep_size was exceeded), so changes ` +
          "since its position are gone: drop the slot and start this migration's backfill again from a new slot",
      );
    }
    // Since PostgreSQL 18 a missing publication is only a WARNING and the stream silently carries
    // nothing for it: a typo would look like an idle source. Refuse it here instead.
    const wanted = this.options.publications;
    const found = await client.query<{ pubname: string }>(
      `select pubname from pg_publication where pubname in (${wanted.map(replicationLiteral).join(", ")})`,
    );
    const missing = wanted.filter((name) => !found.rows.some((r) => r.pubname === name));
    if (missing.length > 0) {
      throw new ReplicationStreamError(
        "publication-missing",
        `publication ${missing.map((name) => `"${name}"`).join(", ")} does not exist in database ` +
          `"${row.current_database}": create it (createPublication) before starting the CDC stream on slot "${this.slot}"`,
      );
    }
    return row.confirmed_flush_lsn === null ? 0n : parseLsn(row.confirmed_flush_lsn);
  }

  private startReplicationCommand(startLsn: bigint): string {
    const publications = this.options.publications.map((name) => pg.escapeIdentifier(name)).join(",");
    const options = [`proto_version '1'`, `publication_names ${replicationLiteral(publications)}`];
    if (this.options.origin !== undefined) options.push(`origin ${replicationLiteral(this.options.origin)}`);
    if (this.options.messages !== false) options.push(`messages 'true'`);
    return `START_REPLICATION SLOT ${pg.escapeIdentifier(this.slot)} LOGICAL ${formatLsn(startLsn)} (${options.join(", ")})`;
  }

  // ---------------------------------------------------------------------------------------------
  // Receiving

  private onCopyData(chunk: Buffer): void {
    // After CopyDone (stop) the server may still flush a few messages: nobody will read them.
    if (this._state !== "streaming") return;
    try {
      switch (chunk[0]) {
        case XLOG_DATA:
          this.onMessage(this.decoder.decode(chunk.subarray(XLOG_DATA_HEADER_BYTES)));
          break;
        case PRIMARY_KEEPALIVE:
          // 'k', walEnd (Int64), server time (Int64), reply requested (Byte1).
          this.onKeepalive(chunk.readBigUInt64BE(1), chunk[17] === 1);
          break;
        default:
          throw new PgoutputProtocolError(
            `unknown replication message type 0x${chunk[0]?.toString(16) ?? "??"}`,
          );
      }
    } catch (error) {
      this.fail(
        error instanceof ReplicationStreamError
          ? error
          : new ReplicationStreamError(
              "protocol",
              `CDC stream on slot "${this.slot}" stopped: ${error instanceof Error ? error.message : String(error)}`,
              { cause: error },
            ),
      );
    }
  }

  private onMessage(message: PgoutputMessage): void {
    switch (message.tag) {
      case "begin":
        if (this.open !== null)
          throw new PgoutputProtocolError(`Begin of xid ${message.xid} inside xid ${this.open.xid}`);
        this.open = {
          xid: message.xid,
          finalLsn: message.finalLsn,
          commitTime: message.commitTime,
          origin: null,
          changes: [],
          relationChanges: this.pendingRelationChanges,
          pieces: 0,
        };
        this.pendingRelationChanges = [];
        return;
      case "origin":
        if (this.open !== null) this.open.origin = message.name;
        return;
      case "relation":
        if (message.previous !== null) {
          const change = { previous: message.previous, current: message.relation };
          (this.open?.relationChanges ?? this.pendingRelationChanges).push(change);
        }
        return;
      case "type":
        // Types only name non-built-in column types.
        return;
      case "message":
        // A transactional message is part of its transaction, at its place among the changes (the
        // fence's ownership changes: ownership-route.ts). A non-transactional one has no place in
        // the commit order (the server sends it at once, even if its transaction rolls back): the
        // fence never writes one, and nothing here can act on one safely, so it is left out.
        if (!message.transactional) return;
        if (this.open === null)
          throw new PgoutputProtocolError("transactional Message outside a transaction");
        this.open.changes.push({
          kind: "message",
          lsn: message.lsn,
          prefix: message.prefix,
          content: message.content,
        });
        return;
      case "change":
        if (this.open === null)
          throw new PgoutputProtocolError(`${message.change.kind} outside a transaction`);
        this.open.changes.push(message.change);
        if (this.open.changes.length >= (this.options.maxChangesPerPiece ?? Number.POSITIVE_INFINITY)) {
          this.queuePiece(this.open);
        }
        return;
      case "commit":
        this.onCommit(message.commitLsn, message.endLsn, message.commitTime);
        return;
    }
  }

  private onCommit(commitLsn: bigint, endLsn: bigint, commitTime: bigint): void {
    const open = this.open;
    if (open === null) throw new PgoutputProtocolError(`Commit at ${formatLsn(commitLsn)} without Begin`);
    if (open.finalLsn !== commitLsn) {
      throw new PgoutputProtocolError(
        `Commit LSN ${formatLsn(commitLsn)} does not match Begin's ${formatLsn(open.finalLsn)} (xid ${open.xid})`,
      );
    }
    if (endLsn <= this.lastQueuedEndLsn) {
      throw new PgoutputProtocolError(
        `transaction ${open.xid} ends at ${formatLsn(endLsn)}, not after the previous one (${formatLsn(this.lastQueuedEndLsn)})`,
      );
    }
    this.open = null;
    this.queue.push({
      transaction: {
        xid: open.xid,
        commitLsn,
        endLsn,
        commitTime,
        origin: open.origin,
        changes: open.changes,
        relationChanges: open.relationChanges,
        ...(open.pieces > 0 ? { continued: true } : {}),
      },
      arrivedAt: Date.now(),
    });
    this.queuedChanges += open.changes.length;
    this.lastQueuedEndLsn = endLsn;
    this.pauseIfFull();
    this.wake();
  }

  /** Hands out what an open transaction holds so far, so it never sits whole in memory. */
  private queuePiece(open: OpenTransaction): void {
    this.queue.push({
      piece: {
        xid: open.xid,
        origin: open.origin,
        commitLsn: open.finalLsn,
        commitTime: open.commitTime,
        changes: open.changes,
        relationChanges: open.relationChanges,
      },
      arrivedAt: Date.now(),
    });
    this.queuedChanges += open.changes.length;
    open.changes = [];
    open.relationChanges = [];
    open.pieces++;
    this.pauseIfFull();
    this.wake();
  }

  private pauseIfFull(): void {
    if (
      !this.paused &&
      (this.queue.length >= (this.options.maxBufferedTransactions ?? 1000) ||
        this.queuedChanges >= (this.options.maxBufferedChanges ?? 100_000))
    ) {
      // Stop reading the socket: the server buffers (and eventually waits) instead of us.
      this.paused = true;
      this.connection?.stream.pause();
    }
  }

  private onKeepalive(walEnd: bigint, replyRequested: boolean): void {
    if (walEnd > this.serverLsn) this.serverLsn = walEnd;
    // Outside a transaction, walEnd is how far the server has decoded: every transaction that
    // committed before it has reached us, so it is a position the consumer may confirm once it has
    // applied what came before. Inside a transaction it is not (the open one commits before it).
    if (this.open === null && walEnd > this.idleLsn) {
      // The idle batch's wait starts at the first undelivered position, not the latest: unrelated
      // writes can bring keepalives faster than maxWaitMs, which would otherwise postpone it forever.
      if (this.idleLsn <= this.deliveredLsn) this.idleSince = Date.now();
      this.idleLsn = walEnd;
      this.wake();
    }
    // The server asks for a reply when it heard nothing from us for half of wal_sender_timeout.
    if (replyRequested) {
      this.keepalivesAnswered++;
      this.sendStatus(false);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Delivering

  /**
   * Waits for the next batch of committed transactions. Resolves null once the stream was stopped;
   * rejects with a ReplicationStreamError after a failure (having first delivered every transaction
   * that was already complete). One caller at a time.
   */
  async readBatch(limits: BatchLimits = {}): Promise<TransactionBatch | null> {
    if (this.reading) throw new Error("readBatch is already waiting: a CDC stream has exactly one consumer");
    this.reading = true;
    try {
      const idleDeadline = limits.idleTimeoutMs === undefined ? null : Date.now() + limits.idleTimeoutMs;
      for (;;) {
        if (this._state === "stopping" || this._state === "stopped") return null;
        const now = Date.now();
        const { batch, wakeAt } = this.takeBatch(limits, now);
        if (batch !== null) return batch;
        if (this.failure !== null) throw this.failure;
        if (idleDeadline !== null && now >= idleDeadline) {
          return { transactions: [], confirmableLsn: this.deliveredLsn };
        }
        const until =
          wakeAt === null ? idleDeadline : idleDeadline === null ? wakeAt : Math.min(wakeAt, idleDeadline);
        await this.waitForWork(until === null ? null : Math.max(0, until - now));
      }
    } finally {
      this.reading = false;
    }
  }

  /** Batches until stop(); leaving the loop early does not stop the stream (call stop()). */
  async *batches(limits: BatchLimits = {}): AsyncGenerator<TransactionBatch, void, undefined> {
    for (;;) {
      const batch = await this.readBatch(limits);
      if (batch === null) return;
      yield batch;
    }
  }

  private takeBatch(
    limits: BatchLimits,
    now: number,
  ): { batch: TransactionBatch | null; wakeAt: number | null } {
    const maxTransactions = Math.max(1, limits.maxTransactions ?? 100);
    const maxChanges = Math.max(1, limits.maxChanges ?? 10_000);
    const maxWaitMs = limits.maxWaitMs ?? 50;
    const flushAll = this.failure !== null;

    const oldest = this.queue[0];
    // A piece, and the transaction that completes pieces, go alone and at once: the consumer
    // applies them inside an open target transaction.
    if (oldest?.piece !== undefined) {
      this.queue.shift();
      this.queuedChanges -= oldest.piece.changes.length;
      this.resumeIfDrained();
      return {
        batch: { transactions: [], confirmableLsn: this.deliveredLsn, piece: oldest.piece },
        wakeAt: null,
      };
    }
    if (oldest?.transaction?.continued) {
      const transaction = oldest.transaction;
      this.queue.shift();
      this.queuedChanges -= transaction.changes.length;
      if (transaction.endLsn > this.deliveredLsn) this.deliveredLsn = transaction.endLsn;
      this.resumeIfDrained();
      return { batch: { transactions: [transaction], confirmableLsn: transaction.endLsn }, wakeAt: null };
    }
    if (oldest !== undefined) {
      const due = oldest.arrivedAt + maxWaitMs;
      const ready =
        flushAll || now >= due || this.queue.length >= maxTransactions || this.queuedChanges >= maxChanges;
      if (!ready) return { batch: null, wakeAt: due };
      const transactions: CommittedTransaction[] = [];
      let changes = 0;
      while (transactions.length < maxTransactions && changes < maxChanges) {
        const next = this.queue[0]?.transaction;
        if (next === undefined || next.continued) break; // a piece or its completion: next batch
        this.queue.shift();
        transactions.push(next);
        changes += next.changes.length;
      }
      this.queuedChanges -= changes;
      // The loop ran at least once (the queue had an oldest entry), so the fallback never applies.
      let confirmableLsn = transactions[transactions.length - 1]?.endLsn ?? this.deliveredLsn;
      // The idle position covers these transactions too if nothing left in the queue commits before it.
      const head = this.queue[0];
      const following = head?.transaction?.commitLsn ?? head?.piece?.commitLsn;
      if (this.idleLsn > confirmableLsn && (following === undefined || this.idleLsn <= following)) {
        confirmableLsn = this.idleLsn;
      }
      if (confirmableLsn > this.deliveredLsn) this.deliveredLsn = confirmableLsn;
      this.resumeIfDrained();
      return { batch: { transactions, confirmableLsn }, wakeAt: null };
    }

    if (this.idleLsn > this.deliveredLsn) {
      // Nothing to apply, but the server moved on (writes to other tables, or none): hand out the
      // new position so the consumer can confirm it and the slot releases WAL.
      const due = this.idleSince + maxWaitMs;
      if (!flushAll && now < due) return { batch: null, wakeAt: due };
      this.deliveredLsn = this.idleLsn;
      return { batch: { transactions: [], confirmableLsn: this.idleLsn }, wakeAt: null };
    }
    return { batch: null, wakeAt: null };
  }

  private resumeIfDrained(): void {
    if (!this.paused || this._state !== "streaming") return;
    const maxTransactions = this.options.maxBufferedTransactions ?? 1000;
    const maxChanges = this.options.maxBufferedChanges ?? 100_000;
    // Resume at half the limits, so we do not flap between paused and reading on every batch.
    if (this.queue.length <= maxTransactions / 2 && this.queuedChanges <= maxChanges / 2) {
      this.paused = false;
      this.connection?.stream.resume();
    }
  }

  private waitForWork(timeoutMs: number | null): Promise<void> {
    return new Promise((resolve) => {
      const timer = timeoutMs === null ? null : setTimeout(() => done(), timeoutMs);
      const done = () => {
        if (timer !== null) clearTimeout(timer);
        if (this.waiter === done) this.waiter = null;
        resolve();
      };
      this.waiter = done;
    });
  }

  private wake(): void {
    this.waiter?.();
  }

  // ---------------------------------------------------------------------------------------------
  // Acknowledging

  /**
   * Tells the server that everything before `lsn` is durable on the targets, so the slot may
   * release that WAL and a restart resumes after it. Call it with a batch's confirmableLsn (or a
   * transaction's endLsn) only after the apply committed. Going backwards is ignored.
   */
  confirm(lsn: bigint): void {
    if (lsn > this.deliveredLsn) {
      throw new Error(
        `cannot confirm ${formatLsn(lsn)} on slot "${this.slot}": the stream has only delivered changes up to ` +
          `${formatLsn(this.deliveredLsn)}. Confirm a batch's confirmableLsn after applying that batch.`,
      );
    }
    if (lsn <= this.confirmedLsn) return;
    this.confirmedLsn = lsn;
    this.sendStatus(false);
  }

  /**
   * Standby status update: 'r', write, flush, apply (Int64 each), client time (Int64), reply
   * requested (Byte1). All three positions are the confirmed LSN; never what we merely received.
   */
  private sendStatus(replyRequested: boolean): void {
    if (this._state !== "streaming" && this._state !== "stopping") return;
    const connection = this.connection;
    if (connection === null) return;
    const message = Buffer.alloc(34);
    message.write("r", 0, "latin1");
    message.writeBigUInt64BE(this.confirmedLsn, 1);
    message.writeBigUInt64BE(this.confirmedLsn, 9);
    message.writeBigUInt64BE(this.confirmedLsn, 17);
    message.writeBigInt64BE(nowAsPgTimestamp(), 25);
    message.writeUInt8(replyRequested ? 1 : 0, 33);
    connection.sendCopyFromChunk(message);
    this.statusUpdatesSent++;
  }

  // ---------------------------------------------------------------------------------------------
  // Ending

  /**
   * Ends the stream cleanly: reports the confirmed LSN one last time, ends the COPY (CopyDone),
   * waits for the server to finish it, and closes the connection. Unconfirmed transactions will be
   * delivered again by the next stream on this slot. Safe to call more than once.
   */
  async stop(): Promise<void> {
    if (this._state !== "streaming") {
      await this.closeClient();
      return;
    }
    // 1. Final status update, then CopyDone; from here on incoming data is ignored.
    this.sendStatus(false);
    this._state = "stopping";
    this.clearStatusTimer();
    this.wake();
    this.connection?.endCopyFrom();
    // 2. The server may be blocked writing to us if we paused reading: read again so it sees CopyDone.
    if (this.paused) {
      this.paused = false;
      this.connection?.stream.resume();
    }
    // 3. Wait for the server's CopyDone + CommandComplete, bounded: a server that does not answer
    //    (network partition) must not hang shutdown.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.options.stopTimeoutMs ?? 5000);
    });
    await Promise.race([this.copyEnded, timeout]);
    clearTimeout(timer);
    // 4. Close the connection (Terminate).
    await this.closeClient();
    if (this._state === "stopping") this._state = "stopped";
  }

  private onCopyEnded(): void {
    if (this._state === "streaming") {
      this.fail(
        new ReplicationStreamError(
          "connection-lost",
          `the server ended the CDC stream on slot "${this.slot}" (it may be shutting down); ` +
            `restart the stream to resume after the last confirmed LSN ${formatLsn(this.confirmedLsn)}`,
        ),
      );
    }
  }

  private fail(error: ReplicationStreamError): void {
    // Errors while stopping are the connection closing as asked.
    if (this._state === "stopping" || this._state === "stopped" || this._state === "failed") return;
    if (this.failure === null) this.failure = error;
    if (this._state === "starting") return; // start() reports it and closes the client.
    this._state = "failed";
    this.clearStatusTimer();
    this.wake();
    void this.closeClient();
  }

  private describeFailure(error: unknown): ReplicationStreamError {
    if (error instanceof ReplicationStreamError) return error;
    const message = error instanceof Error ? error.message : String(error);
    const code = sqlState(error);
    if (code === "55006") {
      // 'replication slot "x" is active for PID 1234'
      const pid = Number(/PID (\d+)/i.exec(message)?.[1] ?? Number.NaN);
      const holder = Number.isNaN(pid) ? "another process" : `pid ${pid}`;
      return new ReplicationStreamError(
        "slot-in-use",
        `replication slot ${this.slot} is in use by another consumer (${holder}); only one CDC stream per slot may run`,
        { cause: error, pid: Number.isNaN(pid) ? null : pid },
      );
    }
    if (code === "42704" && /publication/i.test(message)) {
      return new ReplicationStreamError(
        "publication-missing",
        `${message}: create the publication (createPublication) in the slot's database, then restart the stream`,
        { cause: error },
      );
    }
    if (code === "42704") {
      return new ReplicationStreamError(
        "slot-missing",
        `${message}: create the slot (createSlot) before starting the CDC stream`,
        { cause: error },
      );
    }
    if (code === "57P01" || code === "57P02" || code === "57P03") {
      // Administrator command, crash or shutdown: the server closed the connection, the slot is fine.
      return new ReplicationStreamError(
        "connection-lost",
        `the server closed the CDC stream on slot "${this.slot}" (${message}); nothing after ` +
          `${formatLsn(this.confirmedLsn)} was confirmed: restart the stream to resume from there`,
        { cause: error },
      );
    }
    if (code !== undefined) {
      return new ReplicationStreamError(
        "server",
        `the server stopped the CDC stream on slot "${this.slot}": ${message} (SQLSTATE ${code})`,
        { cause: error },
      );
    }
    return new ReplicationStreamError(
      "connection-lost",
      `the CDC stream on slot "${this.slot}" lost its connection (${message}); nothing after ` +
        `${formatLsn(this.confirmedLsn)} was confirmed: restart the stream to resume from there`,
      { cause: error },
    );
  }

  private clearStatusTimer(): void {
    if (this.statusTimer !== null) clearInterval(this.statusTimer);
    this.statusTimer = null;
  }

  private async closeClient(): Promise<void> {
    this.clearStatusTimer();
    const client = this.client;
    this.client = null;
    this.connection = null;
    if (client !== null) await client.end().catch(() => {});
  }
}
