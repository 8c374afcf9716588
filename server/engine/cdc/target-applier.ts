// The apply part of replication: one TargetApplier per target — a dedicated, pipelined apply
// session on one database that carries the replication origin of its source → target pair
// (apply-origin.ts) — and TargetAppliers, which applies a routed batch to all of them at once.
//
// Invariants:
// - `appliedUpTo` is the source position the target holds: read from the origin (flushed) when the
//   session opens, then raised by every apply that committed. Transactions at or below it are
//   skipped for this target by the router, so a replay after a reconnect, a worker crash or a lost
//   confirmation never applies a transaction twice (secondary unique keys would refuse it).
// - Every apply transaction is stamped with the end LSN of the last source transaction it covers,
//   and the stamp is its last statement before the commit: PostgreSQL advances the origin on a
//   stamped ROLLBACK too, so a stamp ahead of a failing write would skip that write for ever.
// - A session that ends other than by close() is reported (onLost): the composition restarts.
// - An apply whose COMMIT failed after its stamp ran (or whose answer was lost) ends the session
//   and is settled before the origin is used again — moved back if that transaction aborted, since
//   the abort advanced it (origin-settlement.ts) — and `open` settles it first if that failed.
// - A target that is unreachable fails its open within the connect timeout, and a statement that
//   hangs ends after the statement timeout: a hung target cannot hang the stream's stop.
import pg from "pg";
import { debugTrace } from "../shared/debug-trace";
import { describeConnectionError } from "../sql/connect";
import { type ApplyOptions, applySessionSql, applyToShard, type Statement } from "./apply";
import {
  dropSlotOriginsSql,
  originProgressSql,
  originSessionProgressSql,
  originSessionSetupSql,
  stampAndCommitSql,
} from "./apply-origin";
import { deleteDrainMarksSql, ensureDrainMarkSql } from "./drain-mark";
import { recordStampedFailure, settleOrigin } from "./origin-settlement";
import { parseLsn } from "./slot";
import { newStampWatch, type StampWatch, sendStamped, stampMayHaveAborted } from "./stamped-commit";

export interface TargetApplierOptions {
  url: string;
  origin: string;
  ordinal: number;
  applicationName?: string;
  connectTimeoutMs?: number;
  /** Longest a single apply statement may run (a bounded piece of a transaction). Default 5 min. */
  statementTimeoutMs?: number;
}

/** Who the apply session is on its server, for settling a failed stamped COMMIT from another. */
interface ApplySession {
  url: string;
  pid: number;
  startedEpoch: string;
  connectTimeoutMs: number;
}

export class TargetApplier {
  private closing = false;
  private abandoned = false;

  private constructor(
    readonly ordinal: number,
    readonly origin: string,
    private readonly client: pg.Client,
    /** Source position this target holds (its origin's, then every committed apply's). */
    public appliedUpTo: bigint,
    private readonly session: ApplySession,
  ) {}

  static async open(options: TargetApplierOptions): Promise<TargetApplier> {
    const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    // Before the origin is bound and read: a failed stamped COMMIT of an earlier session may have
    // left it at a stamp whose rows never committed (origin-settlement.ts).
    try {
      await settleOrigin(options.url, options.origin);
    } catch (error) {
      throw new Error(
        `an earlier apply to shard ${options.ordinal} may have aborted after stamping origin ${options.origin}, ` +
          `and whether to move the origin back is not settled yet (${(error as Error).message}); ` +
          "CDC retries once the shard answers",
        { cause: error },
      );
    }
    const client = new pg.Client({
      connectionString: options.url,
      pipeline: true,
      application_name: options.applicationName ?? "shardshift-cdc",
      connectionTimeoutMillis: connectTimeoutMs,
      keepAlive: true,
      statement_timeout: options.statementTimeoutMs ?? 300_000,
    } as pg.ClientConfig);
    client.on("error", () => {});
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => {});
      throw new Error(
        `${describeConnectionError(error, options.url, connectTimeoutMs)} (CDC apply to shard ${options.ordinal})`,
        { cause: error },
      );
    }
    try {
      await client.query(applySessionSql());
      // The drain marker's table first (drain-mark.ts: a fence installed before it had none), in the
      // same message as the origin's binding: no round trip of its own.
      await client.query(`${ensureDrainMarkSql()}; ${originSessionSetupSql(options.origin)}`);
      const progress = originSessionProgressSql(options.origin);
      const { rows } = await client.query<{ lsn: string; pid: number; started: string }>(
        progress.text,
        progress.values,
      );
      const row = rows[0];
      if (!row) throw new Error(`no answer to the origin progress read of shard ${options.ordinal}`);
      debugTrace(`cdc-open t=${options.ordinal} origin=${options.origin} progress=${row.lsn} pid=${row.pid}`);
      return new TargetApplier(options.ordinal, options.origin, client, parseLsn(row.lsn), {
        url: options.url,
        pid: row.pid,
        startedEpoch: row.started,
        connectTimeoutMs,
      });
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
  }

  /**
   * Applies one piece of the stream in one target transaction stamped with `stamp` (the end LSN
   * of the last source transaction it covers). Returns whether anything was written.
   */
  async apply(
    statements: Statement[],
    stamp: { lsn: bigint; commitTimeIso: string },
    options: Omit<ApplyOptions, "sessionPrepared" | "originStamp"> = {},
  ): Promise<boolean> {
    const traced = () =>
      statements
        .filter((s) => s.touches)
        .map(
          (s) =>
            `${s.text.slice(0, 6)}:${s.touches?.relation}:${JSON.stringify(s.touches?.key)}:${s.touches?.xid}`,
        )
        .join(" ");
    let wrote: boolean;
    const before = this.appliedUpTo;
    const watch = newStampWatch();
    try {
      wrote = await applyToShard(this.client, statements, {
        ...options,
        sessionPrepared: true,
        originStamp: { lsn: stamp.lsn, commitTimeIso: stamp.commitTimeIso, watch },
      });
    } catch (error) {
      debugTrace(
        () =>
          `cdc-fail t=${this.ordinal} stamp=${stamp.lsn.toString(16)} n=${statements.length} xid=${watch.xid} ${watch.outcome} err=${(error as Error).message} ${traced()}`,
      );
      await this.settleFailedStamp(watch, stamp.lsn, before);
      throw error;
    }
    debugTrace(
      () => `cdc-ok t=${this.ordinal} stamp=${stamp.lsn.toString(16)} n=${statements.length} ${traced()}`,
    );
    if (wrote && stamp.lsn > this.appliedUpTo) this.appliedUpTo = stamp.lsn;
    return wrote;
  }

  /**
   * A source transaction too large to hold in memory is applied in pieces inside one target
   * transaction, opened at its first piece for this target and committed (stamped) with its end.
   */
  async beginLarge(): Promise<void> {
    await this.client.query("begin isolation level read committed");
  }

  async applyPiece(
    statements: Statement[],
    options: Omit<ApplyOptions, "sessionPrepared" | "originStamp" | "inTransaction"> = {},
  ): Promise<void> {
    await applyToShard(this.client, statements, { ...options, sessionPrepared: true, inTransaction: true });
  }

  async commitLarge(stamp: { lsn: bigint; commitTimeIso: string }): Promise<void> {
    const before = this.appliedUpTo;
    const watch = newStampWatch();
    try {
      await sendStamped(this.client, stampAndCommitSql(stamp.lsn, stamp.commitTimeIso), watch);
    } catch (error) {
      await this.settleFailedStamp(watch, stamp.lsn, before);
      throw error;
    }
    if (stamp.lsn > this.appliedUpTo) this.appliedUpTo = stamp.lsn;
  }

  /** False once a failed stamped COMMIT ended the session: nothing more may run on it. */
  get usable(): boolean {
    return !this.abandoned;
  }

  /**
   * After a failed apply: if its stamp may have run in a transaction that aborted, the session is
   * ended (it holds the origin, and its in-memory position is the stamp) and the origin settled
   * from another session before this rejects, so no batch of this stream is still in that
   * transaction when the composition moves on. A settlement that cannot finish (the target down)
   * stays pending: the next open of this origin completes it first.
   */
  private async settleFailedStamp(watch: StampWatch, stamp: bigint, before: bigint): Promise<void> {
    if (!stampMayHaveAborted(watch)) return;
    recordStampedFailure({
      url: this.session.url,
      origin: this.origin,
      backend: { pid: this.session.pid, startedEpoch: this.session.startedEpoch },
      xid: watch.xid,
      stamp,
      before,
      connectTimeoutMs: this.session.connectTimeoutMs,
    });
    this.abandoned = true;
    // The failure itself reaches the composition: no onLost besides it.
    this.closing = true;
    (
      this.client as unknown as { connection?: { stream?: { destroy(): void } } }
    ).connection?.stream?.destroy();
    await settleOrigin(this.session.url, this.origin).catch((error: unknown) =>
      debugTrace(`cdc-settle-later t=${this.ordinal} origin=${this.origin} err=${(error as Error).message}`),
    );
  }

  /** For bookkeeping on the apply session itself (the snapshot guard's clean-up). */
  get connection(): pg.Client {
    return this.client;
  }

  /**
   * Calls `handler` once if the apply session ends other than by close(): the target's server
   * crashed or restarted, or the connection dropped. Its last asynchronous commits may be gone with
   * it, and nothing re-sends them until the stream replays from the slot — so the composition ends
   * (and restarts from the slot, re-reading every origin) at once, not when its next write happens
   * to go to this target (a quiet target may get none for a long time, while the confirmer, rightly
   * waiting for the lost batch, confirms nothing for any target).
   */
  onLost(handler: (error: Error) => void): void {
    this.client.once("end", () => {
      if (this.closing) return;
      handler(
        new Error(
          `the CDC apply session to target ${this.ordinal} ended (its server restarted or the connection dropped); the stream restarts from the slot`,
        ),
      );
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.client.end().catch(() => {});
  }
}

/** Deadlock and serialization failures: the target's transaction is retried, up to this many times. */
const RETRYABLE = new Set(["40P01", "40001"]);
const MAX_ATTEMPTS = 5;

/**
 * Applies on one target, retrying its own transaction after a deadlock or serialization failure
 * (nothing of it committed; the other targets' commits stand: their origins hold them).
 */
export async function applyWithRetry(
  target: TargetApplier,
  statements: Statement[],
  stamp: OriginStamp,
  options: Omit<ApplyOptions, "sessionPrepared" | "originStamp"> = {},
): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await target.apply(statements, stamp, options);
    } catch (error) {
      const code = (error as { code?: string }).code;
      // Not on a session a failed stamped COMMIT ended (TargetApplier.usable).
      if (attempt < MAX_ATTEMPTS && code && RETRYABLE.has(code) && target.usable) continue;
      throw error;
    }
  }
}

/** The source position a target's transaction is stamped with, and the source commit time. */
export interface OriginStamp {
  lsn: bigint;
  commitTimeIso: string;
}

/**
 * Every target of one composition, in ordinal order. Applies each target's share of a batch in one
 * transaction per target, targets in parallel; a large source transaction in pieces, inside one
 * open transaction per target that its completing transaction commits.
 */
export class TargetAppliers {
  /** Targets holding an open transaction for the large source transaction being applied in pieces. */
  private large: Set<number> | null = null;

  constructor(readonly all: readonly TargetApplier[]) {}

  /** Pieces of a large transaction were applied and await its end. */
  get holdsLarge(): boolean {
    return this.large !== null;
  }

  /** Per target, the source position it holds (the router skips transactions at or below it). */
  appliedUpTo(): bigint[] {
    return this.all.map((t) => t.appliedUpTo);
  }

  /**
   * Applies `perTarget[i]` on target i, stamped with `stamp`. A target that fails with a deadlock
   * retries its own transaction (the others' commits stand: their origins hold them). Resolves with
   * the stamp of every target that wrote; rejects with the first failure once every target settled
   * (none may still be inside this batch's transaction).
   */
  async apply(
    perTarget: readonly Statement[][],
    stamp: OriginStamp,
    options: Omit<ApplyOptions, "sessionPrepared" | "originStamp"> = {},
  ): Promise<Map<number, bigint>> {
    const settled = await Promise.allSettled(
      perTarget.map((statements, i) =>
        applyWithRetry(this.all[i] as TargetApplier, statements, stamp, options),
      ),
    );
    return this.outcome(settled, stamp.lsn);
  }

  /** One piece of a large source transaction: into each target's open transaction (opened at its first piece). */
  async applyPiece(
    perTarget: readonly Statement[][],
    options: Omit<ApplyOptions, "sessionPrepared" | "originStamp" | "inTransaction"> = {},
  ): Promise<void> {
    this.large ??= new Set<number>();
    const opened = this.large;
    await Promise.all(
      perTarget.map(async (statements, i) => {
        if (statements.length === 0) return;
        const target = this.all[i] as TargetApplier;
        if (!opened.has(i)) {
          await target.beginLarge();
          opened.add(i);
        }
        await target.applyPiece(statements, options);
      }),
    );
  }

  /**
   * The transaction that completes a large one: its last changes, then every open target
   * transaction committed with its stamp. A failure ends the composition: the targets roll back and
   * the slot replays the transaction whole.
   */
  async commitLarge(
    perTarget: readonly Statement[][],
    stamp: OriginStamp,
    options: Omit<ApplyOptions, "sessionPrepared" | "originStamp" | "inTransaction"> = {},
  ): Promise<Map<number, bigint>> {
    const opened = this.large ?? new Set<number>();
    this.large = null;
    const wrote = new Map<number, bigint>();
    await Promise.all(
      perTarget.map(async (statements, i) => {
        const target = this.all[i] as TargetApplier;
        if (statements.length === 0 && !opened.has(i)) return;
        if (!opened.has(i)) await target.beginLarge();
        if (statements.length) await target.applyPiece(statements, options);
        await target.commitLarge(stamp);
        wrote.set(i, stamp.lsn);
      }),
    );
    return wrote;
  }

  /** `handler` once per target whose apply session is lost (TargetApplier.onLost). */
  onLost(handler: (error: Error) => void): void {
    for (const t of this.all) t.onLost(handler);
  }

  async close(): Promise<void> {
    await Promise.all(this.all.map((t) => t.close()));
  }

  private outcome(settled: PromiseSettledResult<boolean>[], lsn: bigint): Map<number, bigint> {
    const wrote = new Map<number, bigint>();
    for (const [i, r] of settled.entries()) if (r.status === "fulfilled" && r.value) wrote.set(i, lsn);
    const failure = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failure) throw failure.reason;
    return wrote;
  }
}

/**
 * How long the confirmer and the clean-up wait on a target's answer: a hung target must not hang
 * the runner's stop or a cancel (pg ends the query client-side; the pool drops that connection).
 */
const TARGET_QUERY_TIMEOUT_MS = 10_000;

/** The flushed origin position of a target, read on any connection (the confirmer's). */
export async function readOriginProgress(target: Pick<pg.Pool, "query">, origin: string): Promise<bigint> {
  const progress = originProgressSql(origin);
  const { rows } = await target.query<{ lsn: string }>({
    text: progress.text,
    values: progress.values,
    query_timeout: TARGET_QUERY_TIMEOUT_MS,
  } as pg.QueryConfig);
  return parseLsn(rows[0]?.lsn ?? "0/0");
}

/**
 * Drops every origin of `slot` on a target server (the movement ended; nothing applies any more),
 * and their drain marks in the target's database (drain-mark.ts; none there without its table).
 */
export async function dropSlotOrigins(target: Pick<pg.Pool, "query">, slot: string): Promise<void> {
  const marks = deleteDrainMarksSql(slot);
  await target
    .query({
      text: marks.text,
      values: marks.values,
      query_timeout: TARGET_QUERY_TIMEOUT_MS,
    } as pg.QueryConfig)
    .catch((error: unknown) => {
      // 42P01 undefined table, 3F000 undefined schema: no marker was ever written here.
      const code = (error as { code?: string }).code;
      if (code !== "42P01" && code !== "3F000") throw error;
    });
  const drop = dropSlotOriginsSql(slot);
  await target.query({
    text: drop.text,
    values: drop.values,
    query_timeout: TARGET_QUERY_TIMEOUT_MS,
  } as pg.QueryConfig);
}
