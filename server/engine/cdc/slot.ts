// Publications, logical replication slots and LSNs on a CDC source.
//
// Every statement is a pure builder returning { text, values }; the small async helpers below run
// them and turn server errors into sentences that say what to do next.
//
// Invariants:
// - Identifiers are always quoted (escapeIdentifier) or passed as values; never spliced raw.
// - An LSN is a bigint everywhere in the engine ('X/Y' text only at the edges): a JS number cannot
//   hold all 64 bits and two 'X/Y' strings do not compare correctly as text.
// - A slot retains WAL until it is dropped: every slot created here must be dropped at the end (or
//   on cancel). dropSlot refuses to kill an active consumer unless told to.
import pg from "pg";
import type { SqlStatement } from "../shared/sql-statement";

export type { SqlStatement };

export interface TableName {
  schema: string;
  table: string;
}

type Queryable = Pick<pg.Pool, "query">;

// ---------------------------------------------------------------------------------------------
// LSNs

const LSN_PATTERN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** Parses the server's 'X/Y' text (e.g. '16/B374D848') into a 64-bit bigint. */
export function parseLsn(text: string): bigint {
  const match = LSN_PATTERN.exec(text.trim());
  if (match === null || match[1] === undefined || match[2] === undefined) {
    throw new Error(`"${text}" is not a PostgreSQL LSN; expected two hexadecimal halves like '16/B374D848'`);
  }
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/** Formats a bigint LSN the way the server prints it: upper-case hex halves without padding. */
export function formatLsn(lsn: bigint): string {
  if (lsn < 0n || lsn > 0xffff_ffff_ffff_ffffn) throw new RangeError(`LSN ${lsn} is outside 0 … 2^64-1`);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

/** -1, 0 or 1, for sorting. LSNs are bigints, so `<` works too. */
export function compareLsn(a: bigint, b: bigint): -1 | 0 | 1 {
  return a < b ? -1 : a > b ? 1 : 0;
}

function lsnOrNull(text: string | null): bigint | null {
  return text === null ? null : parseLsn(text);
}

// ---------------------------------------------------------------------------------------------
// Names

/** The server only accepts lower-case letters, digits and underscores, at most 63 bytes. */
export function assertSlotName(slot: string): void {
  if (!/^[a-z0-9_]{1,63}$/.test(slot)) {
    throw new Error(
      `"${slot}" is not a valid replication slot name: use 1–63 lower-case letters, digits and underscores`,
    );
  }
}

function qualified({ schema, table }: TableName): string {
  return `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(table)}`;
}

// ---------------------------------------------------------------------------------------------
// Builders

/**
 * Publishes every kind of change, truncate included, so a TRUNCATE on legacy reaches the shards.
 * A partitioned table's changes are published as its root's (publish_via_partition_root): the
 * engine migrates roots (the schema snapshot lists no partitions), and a change named after a
 * partition would stop CDC as "a table not in the migration".
 */
export function createPublicationSql(publication: string, tables: readonly TableName[]): SqlStatement {
  if (tables.length === 0) throw new Error(`publication "${publication}" needs at least one table`);
  return {
    text:
      `create publication ${pg.escapeIdentifier(publication)} for table ${tables.map(qualified).join(", ")} ` +
      "with (publish = 'insert, update, delete, truncate', publish_via_partition_root = true)",
    values: [],
  };
}

export function dropPublicationSql(publication: string): SqlStatement {
  return { text: `drop publication if exists ${pg.escapeIdentifier(publication)}`, values: [] };
}

/**
 * Tables whose UPDATE/DELETE would carry no old key: no primary key and replica identity DEFAULT,
 * identity NOTHING, or USING INDEX on a dropped index. Once published, the source refuses UPDATE and
 * DELETE on them, so the application would break.
 */
export function tablesWithoutReplicaIdentitySql(tables: readonly TableName[]): SqlStatement {
  return {
    text: `
      select n.nspname as schema, c.relname as table, c.relreplident as identity
      from unnest($1::text[], $2::text[]) as t(schema, name)
      join pg_namespace n on n.nspname = t.schema
      join pg_class c on c.relnamespace = n.oid and c.relname = t.name
      where c.relreplident = 'n'
         or (c.relreplident = 'd'
             and not exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisprimary))
         or (c.relreplident = 'i'
             and not exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisreplident))
      order by 1, 2`,
    values: [tables.map((t) => t.schema), tables.map((t) => t.table)],
  };
}

/**
 * Returns the slot's consistent point: the stream delivers every transaction that commits after it.
 * No snapshot is exported (that needs the replication protocol), so a backfill must be correct
 * without one (idempotent upserts, CDC applied on top).
 */
export function createSlotSql(slot: string): SqlStatement {
  assertSlotName(slot);
  return {
    text: "select slot_name, lsn::text as lsn from pg_create_logical_replication_slot($1, 'pgoutput')",
    values: [slot],
  };
}

export function dropSlotSql(slot: string): SqlStatement {
  return { text: "select pg_drop_replication_slot($1)", values: [slot] };
}

/** Ends the backend streaming from the slot, so the slot can be dropped. */
export function terminateSlotConsumerSql(slot: string): SqlStatement {
  return {
    text: `select pg_terminate_backend(active_pid) as terminated, active_pid
           from pg_replication_slots where slot_name = $1 and active_pid is not null`,
    values: [slot],
  };
}

const SLOT_COLUMNS = `
  slot_name, plugin, slot_type, database, active, active_pid,
  restart_lsn::text as restart_lsn, confirmed_flush_lsn::text as confirmed_flush_lsn,
  wal_status, safe_wal_size::text as safe_wal_size,
  pg_wal_lsn_diff(
    case when pg_is_in_recovery() then pg_last_wal_receive_lsn() else pg_current_wal_lsn() end,
    restart_lsn)::text as retained_bytes`;

export function slotStatusSql(slot: string): SqlStatement {
  return { text: `select ${SLOT_COLUMNS} from pg_replication_slots where slot_name = $1`, values: [slot] };
}

/** Slots whose name starts with `prefix` (taken literally: '_' is not a wildcard here). */
export function slotsWithPrefixSql(prefix: string): SqlStatement {
  return {
    text: `select ${SLOT_COLUMNS} from pg_replication_slots
           where left(slot_name, length($1)) = $1 order by slot_name`,
    values: [prefix],
  };
}

export function currentWalLsnSql(): SqlStatement {
  return {
    text: `select (case when pg_is_in_recovery() then pg_last_wal_replay_lsn()
                        else pg_current_wal_lsn() end)::text as lsn`,
    values: [],
  };
}

// ---------------------------------------------------------------------------------------------
// Helpers

export type WalStatus = "reserved" | "extended" | "unreserved" | "lost";

export interface SlotStatus {
  slot: string;
  plugin: string | null;
  slotType: "logical" | "physical";
  database: string | null;
  active: boolean;
  activePid: number | null;
  /** Oldest WAL the slot still needs; null once the slot lost its WAL. */
  restartLsn: bigint | null;
  /** Everything before this LSN was confirmed by the consumer; a restart at 0/0 resumes here. */
  confirmedFlushLsn: bigint | null;
  /** 'lost' means the server removed WAL the slot needed: it can never resume. */
  walStatus: WalStatus | null;
  /** Bytes of WAL that may still be written before the slot is in danger of being lost (max_slot_wal_keep_size); null when unlimited. */
  safeWalSize: bigint | null;
  /** WAL the slot keeps on disk: the current WAL position minus restart_lsn. */
  retainedBytes: bigint | null;
}

interface SlotRow {
  slot_name: string;
  plugin: string | null;
  slot_type: "logical" | "physical";
  database: string | null;
  active: boolean;
  active_pid: number | null;
  restart_lsn: string | null;
  confirmed_flush_lsn: string | null;
  wal_status: WalStatus | null;
  safe_wal_size: string | null;
  retained_bytes: string | null;
}

function toSlotStatus(row: SlotRow): SlotStatus {
  return {
    slot: row.slot_name,
    plugin: row.plugin,
    slotType: row.slot_type,
    database: row.database,
    active: row.active,
    activePid: row.active_pid,
    restartLsn: lsnOrNull(row.restart_lsn),
    confirmedFlushLsn: lsnOrNull(row.confirmed_flush_lsn),
    walStatus: row.wal_status,
    safeWalSize: row.safe_wal_size === null ? null : BigInt(row.safe_wal_size),
    // pg_wal_lsn_diff returns numeric: whole bytes, but printed as e.g. '1234' (never fractional).
    retainedBytes: row.retained_bytes === null ? null : BigInt(row.retained_bytes.split(".")[0] ?? "0"),
  };
}

async function run<R extends pg.QueryResultRow>(db: Queryable, statement: SqlStatement): Promise<R[]> {
  const result = await db.query<R>(statement.text, statement.values);
  return result.rows;
}

function sqlState(error: unknown): string | undefined {
  return error instanceof Error && "code" in error && typeof error.code === "string" ? error.code : undefined;
}

/**
 * Creates a publication for `tables`, refusing tables without a usable replica identity first
 * (publishing them would make the source reject their UPDATEs and DELETEs).
 */
export async function createPublication(
  db: Queryable,
  publication: string,
  tables: readonly TableName[],
): Promise<void> {
  const unsafe = await run<{ schema: string; table: string }>(db, tablesWithoutReplicaIdentitySql(tables));
  if (unsafe.length > 0) {
    const names = unsafe.map((t) => qualified(t)).join(", ");
    throw new Error(
      `${names} ${unsafe.length === 1 ? "has" : "have"} no primary key and no replica identity, so CDC could not ` +
        "identify rows for UPDATE and DELETE (and the source would refuse those statements once published). " +
        `Add a primary key, or run ALTER TABLE … REPLICA IDENTITY FULL, then retry. Publication "${publication}" was not created.`,
    );
  }
  try {
    await run(db, createPublicationSql(publication, tables));
  } catch (error) {
    if (sqlState(error) === "42710") {
      throw new Error(
        `publication "${publication}" already exists: reuse it, or drop it with dropPublication first`,
        { cause: error },
      );
    }
    throw error;
  }
}

export async function dropPublication(db: Queryable, publication: string): Promise<void> {
  await run(db, dropPublicationSql(publication));
}

/**
 * Creates a pgoutput slot and returns its consistent LSN. The server waits for transactions already
 * running to finish first, so a long-open transaction on the source delays this call.
 */
export async function createSlot(db: Queryable, slot: string): Promise<bigint> {
  try {
    const [row] = await run<{ lsn: string }>(db, createSlotSql(slot));
    if (row === undefined)
      throw new Error(`pg_create_logical_replication_slot returned no row for "${slot}"`);
    return parseLsn(row.lsn);
  } catch (error) {
    switch (sqlState(error)) {
      case "42710":
        throw new Error(
          `replication slot "${slot}" already exists: resume the stream from it, or drop it with dropSlot first`,
          { cause: error },
        );
      case "53400":
        throw new Error(
          `no free replication slot for "${slot}" (max_replication_slots reached): drop unused slots or raise max_replication_slots`,
          { cause: error },
        );
      case "55000":
        throw new Error(
          `the source cannot create logical slot "${slot}": ${error instanceof Error ? error.message : String(error)}. ` +
            "Logical replication needs wal_level = logical (a server restart after changing it).",
          { cause: error },
        );
    }
    throw error;
  }
}

export async function readSlotStatus(db: Queryable, slot: string): Promise<SlotStatus | null> {
  const [row] = await run<SlotRow>(db, slotStatusSql(slot));
  return row === undefined ? null : toSlotStatus(row);
}

export async function listSlots(db: Queryable, prefix: string): Promise<SlotStatus[]> {
  return (await run<SlotRow>(db, slotsWithPrefixSql(prefix))).map(toSlotStatus);
}

export async function currentWalLsn(db: Queryable): Promise<bigint> {
  const [row] = await run<{ lsn: string }>(db, currentWalLsnSql());
  if (row === undefined) throw new Error("the server returned no current WAL position");
  return parseLsn(row.lsn);
}

export interface DropSlotOptions {
  /** End the backend streaming from the slot (pg_terminate_backend) instead of refusing. */
  terminateActive?: boolean;
  /** How long to wait for a terminated consumer to let go of the slot. Default 10 s. */
  timeoutMs?: number;
}

/**
 * Drops a slot; returns false when it did not exist. An active slot (a CDC stream is reading it) is
 * refused unless `terminateActive`, because dropping it under a running stream loses its position.
 */
export async function dropSlot(db: Queryable, slot: string, options: DropSlotOptions = {}): Promise<boolean> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await readSlotStatus(db, slot);
    if (status === null) return false;
    if (status.active) {
      if (!options.terminateActive) {
        throw new Error(
          `replication slot "${slot}" is in use by a CDC stream (pid ${status.activePid ?? "?"}): ` +
            "stop that stream first, or drop with terminateActive to end it",
        );
      }
      if (Date.now() > deadline) {
        throw new Error(
          `replication slot "${slot}" is still in use (pid ${status.activePid ?? "?"}) ${timeoutMs} ms after ` +
            "terminating its consumer; something keeps reconnecting to it. Stop that worker, then retry.",
        );
      }
      await run(db, terminateSlotConsumerSql(slot));
      await new Promise((resolve) => setTimeout(resolve, 50));
      continue;
    }
    try {
      await run(db, dropSlotSql(slot));
      return true;
    } catch (error) {
      const state = sqlState(error);
      if (state === "42704") return false; // dropped concurrently: the outcome we wanted
      // 55006: a consumer attached between our check and the drop. Loop: refuse or terminate again.
      if (state !== "55006") throw error;
    }
  }
}
