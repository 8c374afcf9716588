// Settling an apply transaction whose COMMIT failed after its origin stamp ran.
//
// Why: PostgreSQL advances the session's origin when a stamped transaction ABORTS too (the abort
// record carries the origin, and recovery replays it). Nothing orders a COMMIT's own failures
// before the stamp: an ENABLE ALWAYS trigger that notified makes COMMIT wait in PreCommit_Notify
// for the NOTIFY queue's lock, and a terminate or a cancel ending that wait aborts the transaction;
// a full NOTIFY queue fails the COMMIT outright. The origin is then at the batch's stamp with none
// of its rows, and the next session, reading it, skips the batch for good
// (break-stamp-xid-commit-wait.test.ts). So before anything uses that origin again the failed
// transaction is settled, from a session of its own:
// 1. The applying backend ended — terminated if it still runs (it may still be inside COMMIT, and it
//    holds the origin) and waited for, so the transaction's outcome is final and the origin free.
//    Its xid, if the stamp's row never arrived (the connection dropped), is read from it first.
// 2. The outcome read: pg_xact_status. Committed: nothing to undo, the origin is right.
// 3. Aborted, and the origin still at exactly this stamp: moved back to where it was before the
//    batch (pg_replication_origin_advance), and the move flushed — it is a WAL record of its own,
//    and the abort record it undoes may already be on disk — by making it inside a transaction with
//    an xid that waits for the local flush, and checking the flush reached it.
//
// Invariants:
// - The origin is only ever moved back from this transaction's own stamp, after its abort is known:
//   a commit is never undone, nor anything a later session applied.
// - Pending settlements live in this process, per target server and origin. TargetApplier.open
//   settles its origin's first and fails while it cannot (the target down): the composition retries.
//   A CDC thread reports its pending settlements to the process, which hands them to the next
//   thread of its lane (handOverSettlements): a thread ended by isolated-runner's stop() timeout, or
//   one that died, left them behind, and the next thread's open read the origin at the aborted stamp
//   (break-settle-thread.test.ts).
// - Until the settlement, the origin overstates what the target holds, and only this process knows.
//   Nothing elsewhere takes the origin alone for "the target holds it": the confirmer counts a batch
//   only once its transactions committed (durable-confirm.ts), and the cutover's drain — another
//   thread or worker process — also needs the drain mark row that only a committed marker
//   transaction leaves (drain-mark.ts, drain.ts): an aborted batch that carried the fence change
//   never reads as drained (break-drain-aborted-stamp.test.ts).
//
// Residual windows (not covered):
// - The worker process dies between the failed COMMIT and the settlement: the pending settlement
//   dies with it, and the next process finds the origin at the stamp and skips the batch. A fence
//   change inside that batch is skipped with it, so its drain never reaches (the cutover aborts at
//   its budget) — but the batch's rows stay lost, and a later fence change drains past them.
// - The connection dropped before the stamp's row arrived and the backend had finished by the time
//   it was looked for (or got its xid, stamped and aborted between the read of its xid and its
//   termination): committed and aborted cannot be told apart, and the origin is left as it is.
import pg from "pg";
import { debugTrace } from "../shared/debug-trace";
import { fullXid as placeXid } from "../shared/snapshot-guard";
import { formatLsn } from "./slot";

/** An apply transaction that may have aborted after its stamp ran. */
export interface StampedFailure {
  url: string;
  origin: string;
  /** The apply session's backend, as it opened (its start time tells a reused pid apart). */
  backend: { pid: number; startedEpoch: string };
  /** The stamped transaction (xid8, as text), if its stamp's row arrived. */
  xid: string | null;
  /** The failed transaction's stamp, and the origin's position before it. */
  stamp: bigint;
  before: bigint;
  connectTimeoutMs: number;
}

/** How long one settlement may take before it is left pending for the next try. */
const SETTLE_DEADLINE_MS = 30_000;
/** How long one pg_terminate_backend waits for the backend to exit (it polls on the server). */
const TERMINATE_WAIT_MS = 5_000;
const POLL_MS = 50;

const pending = new Map<string, { failure: StampedFailure; settling: Promise<void> | null }>();

/** A thread's pending settlements, all of them, as it reports them to its process. */
export interface SettlementsMessage {
  kind: "settlements";
  failures: StampedFailure[];
}

let reportPending: ((message: SettlementsMessage) => void) | null = null;

function pendingChanged(): void {
  reportPending?.({ kind: "settlements", failures: [...pending.values()].map((e) => e.failure) });
}

/**
 * In a CDC thread, at its start: takes over what an ended thread of its lane left pending, and
 * reports every change of this thread's pending settlements (isolated-runner.ts keeps the last).
 */
export function handOverSettlements(
  inherited: readonly StampedFailure[],
  report: (message: SettlementsMessage) => void,
): void {
  for (const failure of inherited) {
    const key = keyOf(failure.url, failure.origin);
    if (!pending.has(key)) pending.set(key, { failure, settling: null });
  }
  reportPending = report;
  pendingChanged();
}

/** Origins are per server: the key drops the database (and the user) from the URL. */
function keyOf(url: string, origin: string): string {
  let server = url;
  try {
    const u = new URL(url);
    server = `${u.hostname}:${u.port}${u.search}`;
  } catch {
    // Not a URL (a keyword/value string): the whole string names the server.
  }
  return `${server}\n${origin}`;
}

/** Records a failure to settle before its origin is used again (replaces none: see open). */
export function recordStampedFailure(failure: StampedFailure): void {
  pending.set(keyOf(failure.url, failure.origin), { failure, settling: null });
  pendingChanged();
}

/** Whether a settlement of this origin is still pending (tests). */
export function settlementPending(url: string, origin: string): boolean {
  return pending.has(keyOf(url, origin));
}

/**
 * Settles the pending failure of `origin` on the server of `url`, if any. Rejects if it cannot
 * (the target unreachable): the failure stays pending and the next call tries again.
 */
export async function settleOrigin(url: string, origin: string): Promise<void> {
  const key = keyOf(url, origin);
  for (;;) {
    const entry = pending.get(key);
    if (!entry) return;
    if (!entry.settling) {
      entry.settling = settle(entry.failure).then(
        () => {
          if (pending.get(key) === entry) {
            pending.delete(key);
            pendingChanged();
          }
        },
        (error: unknown) => {
          entry.settling = null;
          throw error;
        },
      );
    }
    await entry.settling;
  }
}

async function settle(failure: StampedFailure): Promise<void> {
  const deadline = Date.now() + SETTLE_DEADLINE_MS;
  const client = new pg.Client({
    connectionString: failure.url,
    application_name: "shardshift-cdc-settle",
    connectionTimeoutMillis: failure.connectTimeoutMs,
    query_timeout: TERMINATE_WAIT_MS + 10_000,
  });
  client.on("error", () => {});
  await client.connect();
  try {
    const xid = (await endBackend(client, failure, deadline)) ?? failure.xid;
    if (xid === null) {
      debugTrace(
        `cdc-settle origin=${failure.origin} stamp=${failure.stamp.toString(16)} xid unknown, backend gone: origin left as it is`,
      );
      return;
    }
    const status = await finalStatus(client, xid, deadline);
    debugTrace(
      `cdc-settle origin=${failure.origin} stamp=${failure.stamp.toString(16)} xid=${xid} ${status}`,
    );
    if (status !== "aborted" || failure.before >= failure.stamp) return;
    await moveBack(client, failure, deadline);
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * Terminates the apply backend if it still runs and waits until it has exited. Returns the xid of
 * the transaction it was in (a full xid8), if it had one and `failure.xid` is unknown.
 */
async function endBackend(
  client: pg.Client,
  failure: StampedFailure,
  deadline: number,
): Promise<string | null> {
  let xid: string | null = null;
  for (;;) {
    // One statement: the xid read and the terminate see the same backend (never a reused pid).
    const { rows } = await client.query<{ xid: string | null; xmax: string; gone: boolean }>(
      `select a.backend_xid::text as xid, pg_snapshot_xmax(pg_current_snapshot())::text as xmax,
              pg_terminate_backend(a.pid, $3) as gone
         from pg_stat_activity a
        where a.pid = $1 and extract(epoch from a.backend_start) = $2::numeric`,
      [failure.backend.pid, failure.backend.startedEpoch, TERMINATE_WAIT_MS],
    );
    const row = rows[0];
    if (!row) return xid;
    if (xid === null && failure.xid === null && row.xid !== null) xid = fullXid(row.xid, row.xmax);
    if (row.gone) return xid;
    if (Date.now() > deadline)
      throw new Error(
        `the apply backend (pid ${failure.backend.pid}) did not exit after pg_terminate_backend`,
      );
  }
}

/**
 * A 32-bit xid as the xid8 it is, given a snapshot's xmax: the xid8 nearest to it (a running xid
 * may be above xmax, but never 2^31 away from it: wraparound protection). The stream reader's
 * placement (snapshot-guard.ts), with pg_stat_activity's text in and pg_xact_status's text out.
 */
export function fullXid(xid: string, xmax: string): string {
  return placeXid(Number(xid), BigInt(xmax)).toString();
}

async function finalStatus(client: pg.Client, xid: string, deadline: number): Promise<string | null> {
  for (;;) {
    const { rows } = await client.query<{ status: string | null }>(
      "select pg_xact_status($1::xid8) as status",
      [xid],
    );
    const status = rows[0]?.status ?? null;
    if (status !== "in progress") return status;
    if (Date.now() > deadline) throw new Error(`transaction ${xid} is still in progress`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function moveBack(client: pg.Client, failure: StampedFailure, deadline: number): Promise<void> {
  for (;;) {
    // The move is a WAL record of its own, and the abort record it undoes may already be on disk:
    // it must be flushed before the settlement counts as done, or a crash of the target replays the
    // abort and brings the stamp back. A transaction flushes its commit only if it wrote WAL itself
    // (PostgreSQL's RecordTransactionCommit): the move is made inside one that has an xid and waits
    // for its local flush (not for a standby: one may be missing). Made in a transaction of its own
    // before, it was flushed by nothing (break-stamp-xid-commit-wait.test.ts, seen once in CI: the
    // origin back at the aborted stamp after the crash).
    await client.query("begin");
    try {
      await client.query("set local synchronous_commit = local");
      await client.query("select pg_current_xact_id()");
      // Only from exactly this stamp (or from where an earlier try already moved it, whose record
      // may not have reached the disk): in the one statement, so nothing moves it in between.
      const { rows } = await client.query<{ lsn: string }>(
        `select pg_replication_origin_advance($1, $2::pg_lsn) is not null as moved,
                pg_current_wal_insert_lsn()::text as lsn
          where coalesce(pg_replication_origin_progress($1, false), '0/0') in ($3::pg_lsn, $2::pg_lsn)`,
        [failure.origin, formatLsn(failure.before), formatLsn(failure.stamp)],
      );
      await client.query("commit");
      const moved = rows[0];
      if (!moved) return;
      const flushed = await client.query<{ ok: boolean }>(
        "select pg_current_wal_flush_lsn() >= $1::pg_lsn as ok",
        [moved.lsn],
      );
      if (!flushed.rows[0]?.ok) {
        throw new Error(
          `the origin ${failure.origin} was moved back, but the move is not on the target's disk yet; the settlement stays pending and is retried`,
        );
      }
      break;
    } catch (error) {
      await client.query("rollback").catch(() => {});
      // The backend's exit releases the origin just after it leaves pg_stat_activity's view.
      const code = (error as { code?: string }).code;
      if (code !== "55006" || Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }
  debugTrace(
    `cdc-settle origin=${failure.origin} moved back ${formatLsn(failure.stamp)} -> ${formatLsn(failure.before)}`,
  );
}
