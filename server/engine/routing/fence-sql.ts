// The fence inside each database (legacy and every shard), as pure SQL builders. See fence.ts for
// the design; this file is only the SQL, so it can be read (and reviewed) in one place.
//
// Objects, all in schema `shardshift` of each database:
//   fence_state        one row: which plan, which database this is ("self"), the map version held
//   tenant_fence       the plan's sparse routing map, mirrored: tenant → owner key/name, frozen
//   stray_write_ticket a sequence: one value per refused write (sequences ignore rollback)
//   stray_write_ring_0…15  sequences used as a ring: the last 16 refusals' tenant hash and reason
//   fence_epoch        a sequence: the newest map version written here (read outside snapshots)
//   fence_row_<col>()  the trigger function for sharded tables keyed by column <col>
//   triggers shardshift_fence_{insert,update,delete} on every sharded table (statement-level)
//   drain_mark         per CDC apply origin writing here, the last fence change it committed
//                      (cdc/drain-mark.ts: what the cutover's drain reads besides the origin)
import { quoteIdent } from "../sql/identifiers";

export const FENCE_SCHEMA = "shardshift";
/** Advisory lock class (two-int form) a write takes shared on its tenant, a fence change exclusive. */
export const FENCE_LOCK_CLASS = 7_363_600;
export const STRAY_RING_SIZE = 16;
/** Owner key of legacy in tenant_fence; a shard's key is its database id. */
export const LEGACY_OWNER_KEY = "legacy";

/**
 * Prefix of the transactional logical message a fence change writes in the database's WAL, in the
 * same transaction as its rows (emitFenceMessageSql): every stream reading the database meets the
 * change at its exact position in commit order (ownership-route.ts, docs/cutover.md step 5).
 */
export const FENCE_MESSAGE_PREFIX = "shardshift_fence";

/** SQLSTATEs of a refused write: frozen (retry after the freeze) and owned elsewhere (re-route). */
export const FENCE_SQLSTATE = { frozen: "SS001", notOwner: "SS002" } as const;

/** Reason codes in a ring entry's low two bits. */
export const STRAY_REASONS = ["unknown", "frozen", "not_owner", "fence_changing"] as const;
export type StrayReason = (typeof STRAY_REASONS)[number];

const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;

export function fenceFunctionName(keyColumn: string): string {
  // One function per shard-key column name: PL/pgSQL then reads NEW.<col> directly (cheap), where a
  // generic function would need to_jsonb(NEW), which detoasts every large column of the row.
  return `${FENCE_SCHEMA}.${quoteIdent(`fence_row_${keyColumn}`)}`;
}

/**
 * The drain marks (cdc/drain-mark.ts): one row per apply origin of a stream into this database,
 * the end position of the last fence change its apply transactions COMMITTED here. Only the engine
 * writes it (no grant): a row an application could write would fool the cutover's drain.
 */
export const DRAIN_MARK_TABLE = `${FENCE_SCHEMA}.drain_mark`;

export function drainMarkTableSql(): string {
  return `create table if not exists ${DRAIN_MARK_TABLE} (
  origin text primary key,
  lsn pg_lsn not null
)`;
}

export function installFenceSchemaSql(): string {
  const ring = Array.from(
    { length: STRAY_RING_SIZE },
    (_, i) => `create sequence if not exists ${FENCE_SCHEMA}.stray_write_ring_${i} minvalue 0 start 0;`,
  ).join("\n");
  return `
create schema if not exists ${FENCE_SCHEMA};
create table if not exists ${FENCE_SCHEMA}.fence_state (
  singleton boolean primary key default true check (singleton),
  plan_id uuid not null,
  self_key text not null,
  self_name text not null,
  legacy_name text not null,
  map_version bigint not null default 0,
  installed_at timestamptz not null default now()
);
create table if not exists ${FENCE_SCHEMA}.tenant_fence (
  tenant_key text primary key,
  owner_key text not null,
  owner_name text not null,
  frozen boolean not null,
  map_version bigint not null
);
${drainMarkTableSql()};
create sequence if not exists ${FENCE_SCHEMA}.stray_write_ticket minvalue 0 start 1;
create sequence if not exists ${FENCE_SCHEMA}.fence_epoch minvalue 0 start 0;
${ring}
-- Application roles read the fence and count their refusals; only the engine changes the fence.
grant usage on schema ${FENCE_SCHEMA} to public;
grant select on ${FENCE_SCHEMA}.fence_state, ${FENCE_SCHEMA}.tenant_fence to public;
grant usage, select, update on all sequences in schema ${FENCE_SCHEMA} to public;`;
}

/** Records which plan and database this fence belongs to; keeps the version it already holds. */
export function upsertFenceStateSql(): string {
  return `
insert into ${FENCE_SCHEMA}.fence_state (plan_id, self_key, self_name, legacy_name)
values ($1::uuid, $2, $3, $4)
on conflict (singleton) do update set
  map_version = case when fence_state.plan_id = excluded.plan_id then fence_state.map_version else 0 end,
  plan_id = excluded.plan_id, self_key = excluded.self_key,
  self_name = excluded.self_name, legacy_name = excluded.legacy_name`;
}

/** One refusal check for the tenant key expression `key` (NEW.col::text or OLD.col::text). */
function checkTenantBlock(key: string): string {
  const ringValue = `(ticket % 536870912) * 17179869184 + (hashtext(k)::bigint + 2147483648) * 4 + code`;
  return `
    k := ${key};
  if k is not null then
    changing := false;
    -- Shared per tenant: a fence change (exclusive) waits for the writes in flight to end, and a
    -- write that finds one in progress waits for it and is refused (its snapshot may predate it).
    if not pg_try_advisory_xact_lock_shared(${FENCE_LOCK_CLASS}, hashtext(k)) then
      perform pg_advisory_xact_lock_shared(${FENCE_LOCK_CLASS}, hashtext(k));
      changing := true;
    end if;
    select f.owner_key, f.owner_name, f.frozen, f.map_version into owner_key, owner_name, frozen, version
      from ${FENCE_SCHEMA}.tenant_fence f where f.tenant_key = k;
    if not found then
      owner_key := '${LEGACY_OWNER_KEY}'; owner_name := TG_ARGV[2]; frozen := false; version := null;
    end if;
    if changing or frozen or owner_key <> TG_ARGV[0] then
      code := case when changing then 3 when frozen then 1 else 2 end;
      -- Sequences are not rolled back with the refused transaction: the engine reads them. A write
      -- that only met a fence change in progress is not a stray: any router's write can race one.
      if code <> 3 then
        ticket := nextval('${FENCE_SCHEMA}.stray_write_ticket');
        perform setval(('${FENCE_SCHEMA}.stray_write_ring_' || (ticket % ${STRAY_RING_SIZE}))::regclass, ${ringValue}, true);
      end if;
      if code = 1 then
        raise exception using errcode = '${FENCE_SQLSTATE.frozen}',
          message = format('Shardshift fence: tenant %s is frozen on %s (routing map version %s) while it moves; no write was made.', k, TG_ARGV[1], coalesce(version::text, '?')),
          detail = format('tenant=%s database=%s owner=%s map_version=%s stray_write=%s', k, TG_ARGV[1], owner_name, coalesce(version::text, '0'), ticket),
          hint = 'Retry after the freeze (at most the plan''s freeze budget); the router SDK waits and retries for you.';
      elsif code = 2 then
        raise exception using errcode = '${FENCE_SQLSTATE.notOwner}',
          message = format('Shardshift fence: tenant %s is owned by %s, not by %s (routing map version %s); the write was refused and recorded as stray write #%s.', k, owner_name, TG_ARGV[1], coalesce(version::text, '0'), ticket),
          detail = format('tenant=%s database=%s owner=%s map_version=%s stray_write=%s', k, TG_ARGV[1], owner_name, coalesce(version::text, '0'), ticket),
          hint = format('Send this tenant''s writes to %s: route them through the Shardshift router SDK, whose map is current.', owner_name);
      else
        raise exception using errcode = '${FENCE_SQLSTATE.frozen}',
          message = format('Shardshift fence: tenant %s''s route on %s changed while this write waited; no write was made.', k, TG_ARGV[1]),
          detail = format('tenant=%s database=%s owner=%s', k, TG_ARGV[1], owner_name),
          hint = 'Retry: the router SDK re-reads the routing map and retries for you.';
      end if;
    end if;
  end if;`;
}

/**
 * The trigger function for tables keyed by `keyColumn`: a statement-level AFTER trigger that reads
 * the statement's transition tables, so a 500-row INSERT checks its distinct tenants once each
 * instead of running per row (measured: per-row checking made bulk inserts ~4× slower). Refusing
 * after the rows are written is as good as before: the error rolls the statement back. Trigger
 * arguments: this database's owner key, its name, legacy's name. INSERT checks the new rows'
 * tenants, DELETE the old rows', UPDATE both (a row moved into a fenced tenant is refused too).
 */
export function fenceFunctionSql(keyColumn: string): string {
  const col = quoteIdent(keyColumn);
  return `
create or replace function ${fenceFunctionName(keyColumn)}() returns trigger
language plpgsql as $fence$
declare
  keys text[]; k text; owner_key text; owner_name text; frozen boolean; version bigint;
  changing boolean; code int; ticket bigint; held bigint;
begin
  -- A transaction reading one snapshot (REPEATABLE READ, SERIALIZABLE) may predate a fence change;
  -- fence_epoch is a sequence, read outside any snapshot: a fence newer than the snapshot refuses.
  if current_setting('transaction_isolation') <> 'read committed' then
    select s.map_version into held from ${FENCE_SCHEMA}.fence_state s;
    if (select e.last_value from ${FENCE_SCHEMA}.fence_epoch e) > coalesce(held, 0) then
      raise exception using errcode = '${FENCE_SQLSTATE.frozen}',
        message = format('Shardshift fence: the routing of %s changed after this transaction began; no write was made.', TG_ARGV[1]),
        hint = 'Retry the transaction: the router SDK re-reads the routing map and retries for you.';
    end if;
  end if;
  if TG_OP = 'INSERT' then
    keys := array(select distinct n.${col}::text from shardshift_new n);
  elsif TG_OP = 'DELETE' then
    keys := array(select distinct o.${col}::text from shardshift_old o);
  else
    keys := array(select n.${col}::text from shardshift_new n union select o.${col}::text from shardshift_old o);
  end if;
  foreach k in array keys loop${checkTenantBlock("k")}
  end loop;
  return null;
end
$fence$`;
}

/**
 * The triggers on one sharded table (one per event: transition tables allow one event per
 * trigger). ENABLE (origin mode, the default): they do not fire in sessions with
 * session_replication_role = replica, which is what every engine writer sets (CDC apply, the
 * backfill copy, repair) and what only a superuser may set — so the engine passes and
 * applications do not. ALWAYS would fence the engine out too.
 */
export function fenceTriggerSql(
  qualifiedTable: string,
  keyColumn: string,
  self: { key: string; name: string },
  legacyName: string,
): string {
  const args = `${literal(self.key)}, ${literal(self.name)}, ${literal(legacyName)}`;
  const fn = fenceFunctionName(keyColumn);
  return `
${dropFenceTriggerSql(qualifiedTable)};
create trigger shardshift_fence_insert after insert on ${qualifiedTable}
  referencing new table as shardshift_new for each statement execute function ${fn}(${args});
create trigger shardshift_fence_update after update on ${qualifiedTable}
  referencing old table as shardshift_old new table as shardshift_new for each statement execute function ${fn}(${args});
create trigger shardshift_fence_delete after delete on ${qualifiedTable}
  referencing old table as shardshift_old for each statement execute function ${fn}(${args});`;
}

export function dropFenceTriggerSql(qualifiedTable: string): string {
  return ["insert", "update", "delete"]
    .map((event) => `drop trigger if exists shardshift_fence_${event} on ${qualifiedTable}`)
    .join(";\n");
}

/**
 * Takes the fence lock exclusively of every changing tenant whose new route RESTRICTS writes here
 * (frozen, or owned by another database), in one order (so two fence changes never deadlock each
 * other): waits for the writes in flight to those tenants to end. $1 tenant keys, $2 owner keys,
 * $3 frozen flags.
 *
 * A route that lets the tenant write here (unfrozen, owned by this database) takes no lock. Found
 * by h-break (break-long-writer.test.ts): when a long transaction held a tenant on legacy past a
 * cutover's budget, the aborted cutover's unfreeze — and the fence watch, every second — kept
 * queueing exclusive requests behind it; each queued request made every NEW writer of the tenant
 * wait and then be refused ("changed while this write waited"), so writes did not resume on
 * legacy for as long as the long transaction lived. Lifting a restriction needs no wait: a writer
 * in flight was allowed before and is allowed after.
 */
export function lockTenantsForFenceChangeSql(): string {
  return `
select count(pg_advisory_xact_lock(${FENCE_LOCK_CLASS}, h))::int as locked
from (
  select distinct hashtext(r.k) as h
  from unnest($1::text[], $2::text[], $3::boolean[]) as r(k, owner_key, frozen)
  where r.frozen or r.owner_key is distinct from (select s.self_key from ${FENCE_SCHEMA}.fence_state s)
  order by 1
) s`;
}

/** $1 keys, $2 owner keys, $3 owner names, $4 frozen flags, $5 versions. Newer versions win. */
export function upsertTenantFenceSql(): string {
  return `
insert into ${FENCE_SCHEMA}.tenant_fence (tenant_key, owner_key, owner_name, frozen, map_version)
select * from unnest($1::text[], $2::text[], $3::text[], $4::boolean[], $5::bigint[])
on conflict (tenant_key) do update set
  owner_key = excluded.owner_key, owner_name = excluded.owner_name,
  frozen = excluded.frozen, map_version = excluded.map_version
where tenant_fence.map_version < excluded.map_version`;
}

/**
 * The fence change as a transactional logical message (FENCE_MESSAGE_PREFIX), then the WAL insert
 * position after it. The routes are read back from tenant_fence, so the message says what the
 * fence holds now for those tenants (an older version in the input does not overwrite a newer row).
 * Called after the tenants' exclusive locks are granted: every transaction that wrote them before
 * has committed below the returned position, and this transaction commits above it.
 * $1 plan id, $2 map version, $3 tenant keys.
 */
export function emitFenceMessageSql(): string {
  return `
select pg_logical_emit_message(true, '${FENCE_MESSAGE_PREFIX}', json_build_object(
  'planId', $1::text,
  'version', $2::bigint,
  'routes', coalesce((
    select json_agg(json_build_object('tenantKey', f.tenant_key, 'ownerKey', f.owner_key, 'frozen', f.frozen) order by f.tenant_key)
    from ${FENCE_SCHEMA}.tenant_fence f where f.tenant_key = any($3::text[])
  ), '[]'::json)
)::text)::text as message_lsn, pg_current_wal_insert_lsn()::text as lsn`;
}

/** Every tenant's row of this fence and which database it is ("self"), for a stream opening on it. */
export function readTenantFenceSql(): string {
  return `
select s.plan_id::text, s.self_key, f.tenant_key, f.owner_key, f.frozen
from ${FENCE_SCHEMA}.fence_state s left join ${FENCE_SCHEMA}.tenant_fence f on true`;
}

/**
 * Raises the fence's version (and fence_epoch with it) to $1 when it is below. A change that does
 * not raise it (one tenant's row written at a version the fence already holds) leaves the one
 * fence_state row alone: locking it would queue every other fence change on this database.
 */
export function advanceFenceVersionSql(): string {
  return `
with state as (
  update ${FENCE_SCHEMA}.fence_state set map_version = $1::bigint
  where plan_id = $2::uuid and map_version < $1::bigint returning map_version
)
select setval('${FENCE_SCHEMA}.fence_epoch', map_version, true)::text as epoch from state`;
}

export function readFenceStateSql(): string {
  return `
select plan_id::text, self_key, self_name, map_version::text from ${FENCE_SCHEMA}.fence_state
where to_regclass('${FENCE_SCHEMA}.fence_state') is not null`;
}

/** The stray-write counter and the ring, in one read (sequences are read outside any snapshot). */
export function readStrayCountersSql(): string {
  const ring = Array.from(
    { length: STRAY_RING_SIZE },
    (_, i) =>
      `(select case when is_called then last_value end from ${FENCE_SCHEMA}.stray_write_ring_${i})::text as r${i}`,
  ).join(",\n  ");
  return `
select (select case when is_called then last_value else 0 end from ${FENCE_SCHEMA}.stray_write_ticket)::text as ticket,
  ${ring}`;
}

/** Tenants of this fence whose key hashes (hashtext) to one of $1. */
export function tenantsByHashSql(): string {
  return `select tenant_key, hashtext(tenant_key) as h from ${FENCE_SCHEMA}.tenant_fence where hashtext(tenant_key) = any($1::int[])`;
}

export function dropFenceSql(keyColumns: readonly string[]): string {
  return [
    ...keyColumns.map((c) => `drop function if exists ${fenceFunctionName(c)}() cascade;`),
    `drop schema if exists ${FENCE_SCHEMA} cascade;`,
  ].join("\n");
}
