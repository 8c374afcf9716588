// Applies decoded changes from legacy to the shards that own them.
//
// Design:
// - A batch (several source transactions) becomes one transaction per shard; changes keep their
//   source commit order within each shard. Only after every shard committed is the batch's end
//   LSN confirmed to the slot (by the caller): a crash re-delivers the batch, and re-applying it is
//   harmless because every statement sets rows to the state the event carries (idempotent).
// - Row images, never deltas: INSERT and a full UPDATE become an upsert of the new row; DELETE
//   deletes by primary key; an UPDATE carrying the "unchanged TOAST" marker updates only the
//   columns it has, so a large value it did not touch is kept, never set to NULL.
// - Routing: a sharded table's row goes to the shard of its tenant key (text, as pgoutput sends
//   it); a row whose tenant changed is deleted from the old tenant's shard; a delete without the
//   key in its old image (key not in the replica identity) goes to every shard; reference tables
//   go to every shard.
// - TRUNCATE and schema changes cannot be replayed safely mid-migration: they stop the stream with
//   a message that says what happened and what to do (CdcStopError).
import { createHash } from "node:crypto";
import type pg from "pg";
import type { SourceSchema, TableInfo } from "../analysis/introspect";
import { guardLocksSql, recordTouchedSql } from "../backfill/snapshot-guard";
import type { Placement } from "../router/placement";
import { quoteIdent } from "../sql/identifiers";
import { setLocalRenderingSql, setSessionRenderingSql } from "../sql/rendering";
import { type Change, type Relation, type Tuple, UNCHANGED_TOAST } from "./pgoutput";

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

type Push = (shards: readonly number[], statement: Statement, applier: TableApplier, keyRow: Tuple) => void;

export class ChangeRouter {
  private readonly appliers = new Map<string, TableApplier>();
  /** Relation ids whose columns were checked against the schema snapshot. */
  private readonly verified = new Set<number>();
  /** (table, tenant) pairs changed since the last drain: the parity "recent" pass checks them. */
  private readonly touchedPairs = new Map<string, { table: string; tenant: string }>();

  drainTouched(): { table: string; tenant: string }[] {
    const pairs = [...this.touchedPairs.values()];
    this.touchedPairs.clear();
    return pairs;
  }

  constructor(
    private readonly schema: SourceSchema,
    private readonly placement: Placement,
  ) {
    for (const table of schema.tables)
      this.appliers.set(`${table.schema}.${table.name}`, tableApplier(table));
    this.allShards = Array.from({ length: placement.shardCount }, (_, i) => i);
  }

  private applierFor(schema: string, table: string): TableApplier {
    const applier = this.appliers.get(`${schema}.${table}`);
    if (!applier) {
      throw new CdcStopError(
        `A change arrived for ${schema}.${table}, which was not in the source schema when the migration started. ` +
          "Tables added during a migration are not migrated: cancel the data movement and start it again to include it.",
      );
    }
    return applier;
  }

  /**
   * The stream reports a relation change only within one session; after a restart the first
   * Relation message is simply "the current definition". So every relation is checked against the
   * snapshot taken at start, once per runner: a column added while no stream ran must stop CDC too,
   * not have its values silently dropped.
   */
  private checkRelation(relation: Relation, applier: TableApplier): void {
    if (this.verified.has(relation.relationId)) return;
    const expected = applier.columns.map((c) => c.name).join(",");
    const actual = relation.columns.map((c) => c.name).join(",");
    if (expected !== actual) {
      throw new CdcStopError(
        `The schema of ${relation.schema}.${relation.table} changed on legacy during the migration (columns now: ${actual}; at start: ${expected}). ` +
          "The change was not applied to the shards. Apply the same change to every shard, then cancel and restart the data movement.",
      );
    }
    this.verified.add(relation.relationId);
  }

  /** Read-only: shared by every statement that goes to every shard. */
  private readonly allShards: readonly number[];

  private shardsOf(applier: TableApplier, row: Tuple | null): readonly number[] {
    const all = this.allShards;
    if (applier.table.kind === "reference" || !row) return all;
    const key = row[this.schema.shardKeyColumn];
    if (key === undefined || key === UNCHANGED_TOAST) return all;
    if (key !== null)
      this.touchedPairs.set(`${applier.table.qualified}\u0000${key}`, {
        table: applier.table.qualified,
        tenant: key,
      });
    if (key === null) {
      throw new CdcStopError(
        `${applier.table.qualified} received a row with a NULL ${this.schema.shardKeyColumn}; it cannot be placed on a shard.`,
      );
    }
    return [this.placement.shardFor(key)];
  }

  /**
   * Turns transactions (in commit order) into per-shard statement lists (in the same order). `xid`
   * is each transaction's full legacy xid8 (text); statements carry it with the key they write.
   */
  route(transactions: readonly { xid: string; changes: readonly Change[] }[]): Statement[][] {
    const out: Statement[][] = this.allShards.map(() => []);
    let xid = "";
    // Every statement is a fresh object from its applier, so it takes its `touches` in place (this
    // runs per change on the event loop that receives the stream: no copies).
    const push: Push = (shards, statement, applier, keyRow) => {
      statement.touches = { relation: applier.table.qualified, key: applier.keyOf(keyRow), xid };
      for (const s of shards) out[s]?.push(statement);
    };
    for (const tx of transactions) {
      xid = tx.xid;
      for (const change of tx.changes) this.routeChange(change, push);
    }
    return out;
  }

  private routeChange(change: Change, push: Push): void {
    switch (change.kind) {
      case "truncate":
        throw new CdcStopError(
          `TRUNCATE of ${change.relations.map((r) => `${r.schema}.${r.table}`).join(", ")} on legacy during the migration. ` +
            "The shards were not truncated: a truncate cannot be replayed per tenant. Cancel the data movement, and start it again once the table is in the state you want.",
        );
      case "insert": {
        const a = this.applierFor(change.relation.schema, change.relation.table);
        this.checkRelation(change.relation, a);
        push(this.shardsOf(a, change.new), a.upsert(change.new), a, change.new);
        break;
      }
      case "delete": {
        const a = this.applierFor(change.relation.schema, change.relation.table);
        this.checkRelation(change.relation, a);
        if (!a.hasKey(change.old.tuple)) {
          throw new CdcStopError(
            `A DELETE on ${a.table.qualified} arrived without its primary key (replica identity ${change.relation.replicaIdentity}). ` +
              "Set REPLICA IDENTITY DEFAULT (with a primary key) or FULL on the table and start the data movement again.",
          );
        }
        push(this.shardsOf(a, change.old.tuple), a.deleteByKey(change.old.tuple), a, change.old.tuple);
        break;
      }
      case "update": {
        const a = this.applierFor(change.relation.schema, change.relation.table);
        this.checkRelation(change.relation, a);
        const targets = this.shardsOf(a, change.new);
        const oldKey = change.old?.tuple ?? null;
        if (
          !oldKey &&
          a.table.kind === "sharded" &&
          !a.table.primaryKey.includes(this.schema.shardKeyColumn)
        ) {
          // The tenant is not part of the key, and without an old image (REPLICA IDENTITY DEFAULT)
          // a change of tenant cannot be told from any other update: the row may have left another
          // shard. Remove it from every other shard (REPLICA IDENTITY FULL avoids these deletes).
          const elsewhere = this.allShards.filter((i) => !targets.includes(i));
          if (elsewhere.length) push(elsewhere, a.deleteByKey(change.new), a, change.new);
        }
        if (oldKey && a.hasKey(oldKey)) {
          const oldTargets = this.shardsOf(a, oldKey);
          const keyChanged = a.table.primaryKey.some((c) => oldKey[c] !== change.new[c]);
          // The row left its old key or its tenant's shard: remove the old image there first.
          const movedAway = oldTargets.filter((s) => !targets.includes(s));
          if (keyChanged) push(oldTargets, a.deleteByKey(oldKey), a, oldKey);
          else if (movedAway.length) push(movedAway, a.deleteByKey(oldKey), a, oldKey);
        }
        const partial = Object.values(change.new).some((v) => v === UNCHANGED_TOAST);
        const statement: Statement = partial
          ? {
              ...a.partialUpdate(change.new, change.new),
              reread: { select: a.selectByKey(change.new), upsert: (row) => a.upsert(row) },
            }
          : a.upsert(change.new);
        push(targets, statement, a, change.new);
        break;
      }
    }
  }
}

export interface ApplyOptions {
  /** Tables whose backfill is unfinished: writes to them take the guard lock and are recorded. */
  guarded?: (relation: string) => boolean;
  /** Reads a row on legacy (for a partial update whose row the shard does not hold yet). */
  readLegacy?: (select: Statement) => Promise<Tuple | null>;
  /** The connection ran APPLY_SESSION_SQL: the transaction needs no settings of its own. */
  sessionPrepared?: boolean;
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

  // One statement and nothing to lock: it is its own transaction (the session already replicates,
  // commits asynchronously and reads committed), sent alone — a third of the messages both ways.
  // The common case at a steady write rate, so it is decided before anything is allocated.
  const [first] = statements;
  if (
    pipelined &&
    options.sessionPrepared &&
    statements.length === 1 &&
    first &&
    !first.reread &&
    !(first.touches && guarded(first.touches.relation))
  ) {
    await client.query(queryConfig(first));
    return true;
  }
  const recorded = statements.flatMap((s) => (s.touches && guarded(s.touches.relation) ? [s.touches] : []));
  // Read committed whatever the shard's default: after the guard lock, every statement must see
  // what the backfill's chunk writes committed before it.
  const opening = options.sessionPrepared
    ? ["begin isolation level read committed"]
    : [
        "begin isolation level read committed",
        "set local session_replication_role = replica",
        "set local synchronous_commit = off",
        setLocalRenderingSql(),
      ];
  // The backfill's chunk writes take the same locks: a chunk and a batch never interleave on a table.
  if (recorded.length) opening.push(guardLocksSql(recorded.map((t) => t.relation)));
  const body = mergeRuns(statements);
  if (recorded.length) body.push(recordTouchedSql(recorded));
  const closing = "commit";
  // Several rows folded into one statement: the same single message, as above.
  const [only] = body;
  if (pipelined && options.sessionPrepared && body.length === 1 && only && !only.reread && !recorded.length) {
    await client.query(queryConfig(only));
    return true;
  }
  if (pipelined && !body.some((s) => s.reread)) {
    // The whole transaction in one round trip. After a failed statement the server rejects the
    // rest and turns COMMIT into ROLLBACK: the first error is the batch's outcome.
    // Corked, the batch leaves in one write instead of one per statement (syscalls dominated the
    // CPU cost of a small batch).
    const socket = (client as unknown as { connection?: { stream?: { cork(): void; uncork(): void } } })
      .connection?.stream;
    socket?.cork();
    let sent: Promise<unknown>[];
    try {
      sent = [
        client.query(opening.join("; ")),
        ...body.map((s) => client.query(queryConfig(s))),
        client.query(closing),
      ];
    } finally {
      socket?.uncork();
    }
    const settled = await Promise.allSettled(sent);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) {
      await client.query("rollback").catch(() => {});
      throw failed.reason;
    }
    return true;
  }

  await client.query(opening.join("; "));
  try {
    for (const s of body) {
      const result = await client.query(queryConfig(s));
      if (s.reread && result.rowCount === 0 && options.readLegacy) {
        const row = await options.readLegacy(s.reread.select);
        // Gone on legacy since: its DELETE follows in the stream.
        if (row) await client.query(queryConfig(s.reread.upsert(row)));
      }
    }
    await client.query(closing);
    return true;
  } catch (error) {
    await client.query("rollback").catch(() => {});
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
