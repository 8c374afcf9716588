// The meeting point of the backfill and CDC on a shard: which rows CDC wrote that a chunk's snapshot
// cannot have seen. docs/backfill-correctness.md gives the whole argument; in short:
//
// - CDC, while a table's backfill is unfinished, records every key it writes on a shard with the
//   legacy transaction id (xid8) that made the change, in `_shardshift.cdc_touched`, in the same
//   shard transaction as the write.
// - A chunk, read from legacy in one REPEATABLE READ snapshot σ without locks, skips every key
//   recorded with an xid that σ does not see (pg_visible_in_snapshot): CDC already holds a newer
//   state of that row (or its deletion), and it must not be overwritten with σ's older one.
// - The two never interleave on a table: both take the same transaction-scoped advisory lock on the
//   shard (one per table) before touching the table.
//
// Entries older than a chunk snapshot's xmin are visible to every later snapshot, so each chunk
// prunes them; a finished table's entries are dropped.
import pg from "pg";

export const GUARD_SCHEMA = "_shardshift";
export const TOUCHED_TABLE = `${GUARD_SCHEMA}.cdc_touched`;
const COPIER_TABLE = `${GUARD_SCHEMA}.copier`;

/**
 * Fencing for copiers: the slice that holds a task's lock on the control plane claims the table on
 * every shard; a chunk lands only if its slice still owns the claim (checked under the guard lock).
 * A slice that lost its lock (its connection dropped, another worker took the task) cannot write
 * an older chunk after its successor started — even one already in flight.
 */
export const COPIER_TAKEN_OVER = "shardshift: copier taken over";

/** Created on every shard by prepareShard (idempotent). Not a table of the application's. */
export const GUARD_DDL = `
create schema if not exists ${GUARD_SCHEMA};
comment on schema ${GUARD_SCHEMA} is 'Shardshift bookkeeping during a data movement; safe to drop when no movement runs.';
create table if not exists ${TOUCHED_TABLE} (
  rel text not null,
  key text[] not null,
  xid xid8 not null
);
create index if not exists cdc_touched_rel_xid on ${TOUCHED_TABLE} (rel, xid);
create table if not exists ${COPIER_TABLE} (
  rel text primary key,
  owner text not null
);
create or replace function ${GUARD_SCHEMA}.assert_copier(r text, o text) returns void language plpgsql as $f$
begin
  if not exists (select 1 from ${COPIER_TABLE} where rel = r and owner = o) then
    raise exception '${COPIER_TAKEN_OVER}: % is being copied by another slice', r;
  end if;
end $f$`;

/** Runs `statement` in one shard transaction holding the guard lock of `relation`. */
async function inGuardedTransaction(
  client: pg.ClientBase,
  relation: string,
  statement: { text: string; values?: unknown[] },
): Promise<void> {
  await client.query("begin");
  try {
    await client.query(guardLockSql(relation));
    await client.query(statement.text, statement.values);
    await client.query("commit");
  } catch (error) {
    await client.query("rollback").catch(() => {});
    throw error;
  }
}

/** Claims `relation` for `owner` on one shard, after any chunk of an earlier owner has landed. */
export function claimCopier(client: pg.ClientBase, relation: string, owner: string): Promise<void> {
  return inGuardedTransaction(client, relation, {
    text: `insert into ${COPIER_TABLE} (rel, owner) values ($1, $2) on conflict (rel) do update set owner = excluded.owner`,
    values: [relation, owner],
  });
}

/** Fails with COPIER_TAKEN_OVER unless `owner` still holds `relation` on this shard. */
export function assertCopier(client: pg.ClientBase, relation: string, owner: string): Promise<void> {
  return inGuardedTransaction(client, relation, { text: assertCopierSql(relation, owner) });
}

/** SQL failing the transaction unless `owner` still holds `relation` (run after the guard lock). */
export function assertCopierSql(relation: string, owner: string): string {
  return `select ${GUARD_SCHEMA}.assert_copier(${pg.escapeLiteral(relation)}, ${pg.escapeLiteral(owner)})`;
}

const GUARD_LOCK_CLASS = 7_363_300;

/** SQL taking the table's guard lock for the rest of the transaction (`relation` is TableInfo.qualified). */
export function guardLockSql(relation: string): string {
  return `select pg_advisory_xact_lock(${GUARD_LOCK_CLASS}, hashtext(${pg.escapeLiteral(relation)}))`;
}

/** The same lock for several tables at once, always in one order (no deadlock between CDC batches). */
export function guardLocksSql(relations: readonly string[]): string {
  const list = [...new Set(relations)].sort().map((r) => `(${pg.escapeLiteral(r)})`);
  return `select pg_advisory_xact_lock(${GUARD_LOCK_CLASS}, hashtext(r)) from (values ${list.join(", ")}) v(r) order by hashtext(r)`;
}

export interface TouchedKey {
  relation: string;
  /** Primary-key values as text, in primary-key order. */
  key: string[];
  /** Full (epoch-qualified) legacy transaction id, as text. */
  xid: string;
}

/** One statement recording `keys` (call only with a non-empty list). */
export function recordTouchedSql(keys: readonly TouchedKey[]): { text: string; values: string[] } {
  return {
    text: `insert into ${TOUCHED_TABLE} (rel, key, xid)
           select r->>'r', array(select jsonb_array_elements_text(r->'k')), (r->>'x')::xid8
             from jsonb_array_elements($1::jsonb) r`,
    values: [JSON.stringify(keys.map((k) => ({ r: k.relation, k: k.key, x: k.xid })))],
  };
}

/**
 * pgoutput names a transaction by its 32-bit xid; snapshots speak 64-bit xid8. A transaction being
 * decoded is within 2^31 of any recent xid8 of the same server, so the reference fixes the epoch.
 */
export function fullXid(xid32: number, reference: bigint): bigint {
  const refLow = Number(reference & 0xffffffffn);
  const delta = (xid32 - refLow) | 0; // signed 32-bit distance
  const full = reference + BigInt(delta);
  if (full < 0n) throw new Error(`xid ${xid32} cannot be placed before reference ${reference}`);
  return full;
}

/** A legacy server's current xid8 horizon without assigning an xid (pg_current_xact_id would). */
export async function currentXidReference(client: pg.ClientBase | pg.Pool): Promise<bigint> {
  const { rows } = await client.query<{ xmax: string }>(
    "select pg_snapshot_xmax(pg_current_snapshot())::text as xmax",
  );
  return BigInt(rows[0]?.xmax ?? "0");
}

/** Drops a finished table's entries on one shard. */
export async function dropTouched(client: pg.ClientBase, relation: string): Promise<void> {
  await client.query(`delete from ${TOUCHED_TABLE} where rel = $1`, [relation]);
}
