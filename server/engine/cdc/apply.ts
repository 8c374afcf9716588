// Row-image statements and the transaction that applies them to one target (which changes go to
// which target is change-router.ts's decision).
//
// Design:
// - A batch (several source transactions) becomes one transaction per target; changes keep their
//   source commit order within each target. Only after every target committed is the batch's end
//   LSN confirmed to the slot (by the confirmer): a crash re-delivers the batch, and the targets'
//   replication origins skip what they already hold (target-applier.ts).
// - Row images, never deltas: INSERT and a full UPDATE become an upsert of the new row; DELETE
//   deletes by primary key; an UPDATE carrying the "unchanged TOAST" marker updates only the
//   columns it has, so a large value it did not touch is kept, never set to NULL.
import { createHash } from "node:crypto";
import type pg from "pg";
import type { TableInfo } from "../analysis/introspect";
import { guardLocksSql, recordTouchedSql } from "../shared/snapshot-guard";
import { quoteIdent } from "../sql/identifiers";
import { setLocalRenderingSql, setSessionRenderingSql } from "../sql/rendering";
import { stampAndCommitSql } from "./apply-origin";
import { oneMessageTransactionSql } from "./one-message-transaction";
import { runInOneSync } from "./one-sync-transaction";
import { type Tuple, UNCHANGED_TOAST } from "./pgoutput";
import { newStampWatch, type StampWatch, sendStamped } from "./stamped-commit";

export class CdcStopError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CdcStopError";
  }
}

export interface Statement {
  /** Named, so each connection parses and plans the statement once. */
  name?: string;
  text: string;
  values: (string | null | (string | null)[])[];
  /**
   * Consecutive statements of the same group (one table, one kind) are sent as one multi-row
   * statement, in their order, unless a key repeats (a statement cannot affect a row twice).
   */
  merge?: {
    group: string;
    key: string;
    values: (string | null)[];
    many: (rows: (string | null)[][]) => Statement;
  };
  /** The row this statement writes, for the backfill's snapshot guard (snapshot-guard.ts). */
  touches?: { relation: string; key: string[]; xid: string };
  /**
   * A partial update (unchanged TOAST values left out) needs the row on the shard. If the backfill
   * has not copied it yet, the row is read from legacy as it is now and written whole instead.
   */
  reread?: { select: Statement; upsert: (row: Tuple) => Statement };
}

function named(text: string): string {
  return `ss_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`;
}

export interface TableApplier {
  table: TableInfo;
  columns: { name: string; type: string }[];
  upsert(row: Tuple): Statement;
  deleteByKey(row: Tuple): Statement;
  partialUpdate(row: Tuple, key: Tuple): Statement;
  /** Reads the row with `key` on legacy, every column as text. */
  selectByKey(key: Tuple): Statement;
  hasKey(row: Tuple): boolean;
  keyOf(row: Tuple): string[];
}

/** Row-image statements for one table (CDC apply, and parity repair). */
export function tableApplier(table: TableInfo): TableApplier {
  const columns = table.columns.filter((c) => !c.generatedExpr).map((c) => ({ name: c.name, type: c.type }));
  const typeOf = new Map(columns.map((c) => [c.name, c.type]));
  const pk = table.primaryKey;
  const hasIdentity = table.columns.some((c) => c.identity);
  const colList = columns.map((c) => quoteIdent(c.name)).join(", ");
  const placeholders = columns.map((c, i) => `$${i + 1}::${c.type}`).join(", ");
  const updates = columns
    .filter((c) => !pk.includes(c.name))
    .map((c) => `${quoteIdent(c.name)} = EXCLUDED.${quoteIdent(c.name)}`);
  const upsertText =
    `INSERT INTO ${table.qualified} (${colList}) ${hasIdentity ? "OVERRIDING SYSTEM VALUE " : ""}VALUES (${placeholders}) ` +
    `ON CONFLICT (${pk.map(quoteIdent).join(", ")}) ${updates.length ? `DO UPDATE SET ${updates.join(", ")}` : "DO NOTHING"}`;
  const keyWhere = (first: number) =>
    pk.map((c, i) => `${quoteIdent(c)} = $${first + i}::${typeOf.get(c) ?? "text"}`).join(" AND ");
  const deleteText = `DELETE FROM ${table.qualified} WHERE ${keyWhere(1)}`;
  const upsertName = named(upsertText);
  const deleteName = named(deleteText);
  const selectText = `SELECT ${columns.map((c) => `${quoteIdent(c.name)}::text AS ${quoteIdent(c.name)}`).join(", ")} FROM ${table.qualified} WHERE ${keyWhere(1)}`;
  const selectName = named(selectText);
  // Multi-row forms: one text[] parameter per column, cast like the single-row form's $n::type.
  const unnestOf = (names: readonly string[]) =>
    `unnest(${names.map((_, i) => `$${i + 1}::text[]`).join(", ")}) AS u(${names.map((_, i) => `v${i + 1}`).join(", ")})`;
  const manyUpsertText =
    `INSERT INTO ${table.qualified} (${colList}) ${hasIdentity ? "OVERRIDING SYSTEM VALUE " : ""}` +
    `SELECT ${columns.map((c, i) => `u.v${i + 1}::${c.type}`).join(", ")} FROM ${unnestOf(columns.map((c) => c.name))} ` +
    `ON CONFLICT (${pk.map(quoteIdent).join(", ")}) ${updates.length ? `DO UPDATE SET ${updates.join(", ")}` : "DO NOTHING"}`;
  const manyDeleteText =
    `DELETE FROM ${table.qualified} AS d USING ${unnestOf(pk)} WHERE ` +
    pk.map((c, i) => `d.${quoteIdent(c)} = u.v${i + 1}::${typeOf.get(c) ?? "text"}`).join(" AND ");
  const columnsOf = (rows: (string | null)[][], width: number) =>
    Array.from({ length: width }, (_, i) => rows.map((r) => r[i] ?? null));
  const manyUpsertName = named(manyUpsertText);
  const manyDeleteName = named(manyDeleteText);
  const manyUpsert = (rows: (string | null)[][]): Statement => ({
    name: manyUpsertName,
    text: manyUpsertText,
    values: columnsOf(rows, columns.length),
  });
  const manyDelete = (rows: (string | null)[][]): Statement => ({
    name: manyDeleteName,
    text: manyDeleteText,
    values: columnsOf(rows, pk.length),
  });
  const keyText = (row: Tuple) => JSON.stringify(pk.map((c) => value(row, c)));
  const value = (row: Tuple, name: string): string | null => {
    const v = row[name];
    if (v === UNCHANGED_TOAST)
      throw new Error(`unexpected unchanged-TOAST marker for ${table.qualified}.${name}`);
    return v ?? null;
  };
  return {
    table,
    columns,
    hasKey: (row) => pk.every((c) => row[c] !== undefined && row[c] !== UNCHANGED_TOAST),
    keyOf: (row) => pk.map((c) => value(row, c) ?? ""),
    selectByKey: (key) => ({ name: selectName, text: selectText, values: pk.map((c) => value(key, c)) }),
    upsert: (row) => {
      const values = columns.map((c) => value(row, c.name));
      return {
        name: upsertName,
        text: upsertText,
        values,
        merge: { group: `${table.qualified} upsert`, key: keyText(row), values, many: manyUpsert },
      };
    },
    deleteByKey: (row) => {
      const values = pk.map((c) => value(row, c));
      return {
        name: deleteName,
        text: deleteText,
        values,
        merge: { group: `${table.qualified} delete`, key: keyText(row), values, many: manyDelete },
      };
    },
    partialUpdate(row, key) {
      const present = columns.filter((c) => row[c.name] !== undefined && row[c.name] !== UNCHANGED_TOAST);
      const sets = present.map((c, i) => `${quoteIdent(c.name)} = $${i + 1}::${c.type}`).join(", ");
      return {
        text: `UPDATE ${table.qualified} SET ${sets} WHERE ${keyWhere(present.length + 1)}`,
        values: [...present.map((c) => value(row, c.name)), ...pk.map((c) => value(key, c))],
      };
    },
  };
}

export interface ApplyOptions {
  /** Tables whose backfill is unfinished: writes to them take the guard lock and are recorded. */
  guarded?: (relation: string) => boolean;
  /** Reads a row on legacy (for a partial update whose row the shard does not hold yet). */
  readLegacy?: (select: Statement) => Promise<Tuple | null>;
  /** The connection ran APPLY_SESSION_SQL: the transaction needs no settings of its own. */
  sessionPrepared?: boolean;
  /**
   * The session carries a replication origin (apply-origin.ts): the transaction is stamped with
   * the source position it brings the target to, in its commit record. `watch` learns whether the
   * stamp ran and in which transaction (stamped-commit.ts): a COMMIT that fails after it is settled.
   */
  originStamp?: { lsn: bigint; commitTimeIso: string; watch?: StampWatch };
  /**
   * The statements are one piece of a large transaction already begun on this connection: no
   * BEGIN or COMMIT here, and after a failure the caller rolls the whole transaction back.
   */
  inTransaction?: boolean;
}

/** What every apply transaction needs, for a connection dedicated to applying (the CDC runner's). */
export function applySessionSql(): string {
  return [
    "set session_replication_role = replica",
    "set synchronous_commit = off",
    "set default_transaction_isolation = 'read committed'",
    setSessionRenderingSql(),
  ].join("; ");
}

/**
 * Runs one shard's statements in one transaction, FK triggers off (rows arrive in any table order),
 * committed without waiting for the flush (durable-confirm.ts). Returns whether it wrote anything.
 */
export async function applyToShard(
  client: pg.ClientBase,
  statements: Statement[],
  options: ApplyOptions = {},
): Promise<boolean> {
  if (statements.length === 0) return false;
  const guarded = options.guarded ?? (() => false);
  const pipelined = (client as pg.ClientBase & { pipeline?: boolean }).pipeline === true;
  const stamp = options.originStamp;
  const watch = stamp?.watch ?? newStampWatch();
  const inTransaction = options.inTransaction === true;
  const recorded = statements.flatMap((s) => (s.touches && guarded(s.touches.relation) ? [s.touches] : []));
  const body = mergeRuns(statements);
  if (recorded.length) body.push(recordTouchedSql(recorded));
  const rereads = body.some((s) => s.reread);

  // THE STAMP RIDES WITH THE COMMIT, in one message. PostgreSQL advances a session's origin when a
  // transaction stamped with pg_replication_origin_xact_setup ABORTS too (the abort record carries
  // the origin, and crash recovery replays it). So a stamp that reached the server without its
  // commit — sent before the writes in a transaction that then failed (a statement error, a lock or
  // statement timeout), or sent as its own message and followed by a lost connection (the engine
  // killed, its thread ended mid-write, a network cut) — moved the origin past source transactions
  // the target never committed. The next runner read that origin, skipped them, and they were lost
  // (failed-apply-origin.test.ts, stamp-at-commit.test.ts). The stamp is therefore only ever sent as
  // `select pg_replication_origin_xact_setup(…); commit` in ONE simple-protocol message: the server
  // runs a message only once it has all of it, and a transaction that failed earlier fails the
  // stamp's select, so it never carries it. What no ordering prevents is the COMMIT itself failing
  // after the stamp (a wait in PreCommit_Notify ended by a terminate or a cancel, a full NOTIFY
  // queue): the stamp's row names its transaction as it runs (stamped-commit.ts), and the applier
  // moves the origin back if that transaction aborted (origin-settlement.ts).
  //
  // The common case, on the runner's own session: BEGIN, the guard lock and every statement as one
  // message sequence under a single Sync, then the stamp-and-commit message, written together —
  // one write out, answered in one round trip (one-sync-transaction.ts). Read committed and
  // asynchronous commit are the session's settings.
  if (pipelined && options.sessionPrepared && !inTransaction && !rereads) {
    const statements = [
      // The backfill's chunk writes take the same locks: a chunk and a batch never interleave on a table.
      ...(recorded.length ? [{ text: guardLocksSql(recorded.map((t) => t.relation)), values: [] }] : []),
      ...body,
    ];
    if (!stamp) {
      await runInOneSync(client, statements);
      return true;
    }
    const closing = stampAndCommitSql(stamp.lsn, stamp.commitTimeIso);
    const oneMessage = oneMessageTransactionSql(client, statements, closing);
    if (oneMessage !== null) {
      try {
        await sendStamped(client, oneMessage, watch);
      } catch (error) {
        // The first failed statement abandoned the rest of the message: the stamp never ran —
        // unless what failed was the COMMIT after it, which the watch saw (its xid arrived): the
        // origin then holds this batch's stamp without its rows, and the caller settles it
        // (TargetApplier, origin-settlement.ts).
        await client.query("rollback").catch(() => {});
        throw error;
      }
      return true;
    }
    // Not one message (a statement not yet prepared here, or large values): the statements under
    // one Sync, and the stamp-and-commit only once they all succeeded. Sent together, a batch that
    // was refused before any of it left (pg refusing the query at submit) let the stamp run alone,
    // in an implicit transaction of its own that committed the stamp without the rows
    // (break-one-message-bookkeeping.test.ts). One more round trip, on this path only.
    try {
      await runInOneSync(client, [{ text: "begin", values: [] }, ...statements]);
      await sendStamped(client, closing, watch);
    } catch (error) {
      // A failed statement left the transaction aborted (or none was begun): the stamp never ran.
      // A failed COMMIT after the stamp is the watch's to report (see the one-message path).
      await client.query("rollback").catch(() => {});
      throw error;
    }
    return true;
  }

  // Read committed whatever the shard's default: after the guard lock, every statement must see
  // what the backfill's chunk writes committed before it.
  const opening = inTransaction
    ? []
    : options.sessionPrepared
      ? ["begin isolation level read committed"]
      : [
          "begin isolation level read committed",
          "set local session_replication_role = replica",
          "set local synchronous_commit = off",
          setLocalRenderingSql(),
        ];
  if (recorded.length) opening.push(guardLocksSql(recorded.map((t) => t.relation)));
  // The stamp rides with the COMMIT in one message (see above), never before the writes.
  const closing = inTransaction ? null : stamp ? stampAndCommitSql(stamp.lsn, stamp.commitTimeIso) : "commit";
  const close = (text: string) => (stamp ? sendStamped(client, text, watch) : client.query(text));
  if (pipelined && !rereads) {
    // The whole transaction (or piece) in one round trip. After a failed statement the server
    // rejects the rest and turns COMMIT into ROLLBACK: the first error is the batch's outcome.
    // Corked, the batch leaves in one write instead of one per statement (syscalls dominated the
    // CPU cost of a small batch).
    const socket = (client as unknown as { connection?: { stream?: { cork(): void; uncork(): void } } })
      .connection?.stream;
    socket?.cork();
    let sent: Promise<unknown>[];
    try {
      sent = [
        ...(opening.length ? [client.query(opening.join("; "))] : []),
        ...body.map((s) => client.query(queryConfig(s))),
        ...(closing ? [close(closing)] : []),
      ];
    } finally {
      socket?.uncork();
    }
    const settled = await Promise.allSettled(sent);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) {
      if (!inTransaction) await client.query("rollback").catch(() => {});
      throw failed.reason;
    }
    return true;
  }

  if (opening.length) await client.query(opening.join("; "));
  try {
    for (const s of body) {
      const result = await client.query(queryConfig(s));
      if (s.reread && result.rowCount === 0 && options.readLegacy) {
        const row = await options.readLegacy(s.reread.select);
        // Gone on legacy since: its DELETE follows in the stream.
        if (row) await client.query(queryConfig(s.reread.upsert(row)));
      }
    }
    if (closing) await close(closing);
    return true;
  } catch (error) {
    if (!inTransaction) await client.query("rollback").catch(() => {});
    throw error;
  }
}

/**
 * Only what pg sends: it copies every own property of a query config, and a statement also carries
 * its merge, guard and re-read details.
 */
function queryConfig(s: Statement): pg.QueryConfig<Statement["values"]> {
  return s.name === undefined
    ? { text: s.text, values: s.values }
    : { name: s.name, text: s.text, values: s.values };
}

/** Folds runs of mergeable statements into multi-row statements, keeping the order of every row. */
export function mergeRuns(statements: readonly Statement[]): Statement[] {
  const out: Statement[] = [];
  let run: Statement[] = [];
  let keys = new Set<string>();
  const flush = () => {
    const first = run[0];
    if (first?.merge)
      out.push(run.length === 1 ? first : first.merge.many(run.map((s) => s.merge?.values ?? [])));
    run = [];
    keys = new Set();
  };
  for (const s of statements) {
    const group = run[0]?.merge?.group;
    if (s.merge && group === s.merge.group && !keys.has(s.merge.key)) {
      run.push(s);
      keys.add(s.merge.key);
      continue;
    }
    flush();
    if (s.merge) {
      run.push(s);
      keys.add(s.merge.key);
    } else {
      out.push(s);
    }
  }
  flush();
  return out;
}
