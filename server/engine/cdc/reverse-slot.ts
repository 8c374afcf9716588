// A shard's reverse replication source (shard → legacy): its publication (the sharded tables only:
// reference tables are legacy's to write) and its logical slot, named after the plan and the shard
// so a restarted engine finds them without any record elsewhere.
//
// Why the slot's consistent point is recorded on the shard (shardshift.reverse_slot): it names the
// apply origin on legacy (applyOriginName), which must be the same for every stream of this slot and
// new for a new slot of the same name — otherwise a slot dropped and created again would inherit an
// old origin's progress and skip transactions. PostgreSQL does not keep a slot's consistent point
// (restart_lsn and confirmed_flush_lsn move), so we do, beside the slot.
//
// Idempotent and safe to race: one session advisory lock per shard serialises ensureReverseSlot,
// and a slot found without its record (a crash between creating it and recording it) was never
// streamed from, so it is dropped and created again.
import type pg from "pg";
import type { SourceSchema } from "../analysis/introspect";
import { FENCE_SCHEMA } from "../routing/fence-sql";
import { checkOut } from "../sql/pools";
import {
  createPublication,
  createSlot,
  dropPublication,
  dropSlot,
  formatLsn,
  parseLsn,
  readSlotStatus,
} from "./slot";

const REVERSE_SLOT_LOCK_CLASS = 7_363_601;

export interface ReverseSlot {
  slot: string;
  /** The slot's consistent point: names the apply origin on legacy (reverseOriginName). */
  slotLsn: bigint;
  publication: string;
}

/** The deterministic name of shard `shardOrdinal`'s reverse slot and publication for a plan. */
export function reverseSlotName(planId: string, shardOrdinal: number): string {
  return `shardshift_rev_${planId.replaceAll("-", "").slice(0, 16)}_${shardOrdinal}`;
}

const recordTableSql = `
create schema if not exists ${FENCE_SCHEMA};
create table if not exists ${FENCE_SCHEMA}.reverse_slot (
  slot_name text primary key,
  slot_lsn pg_lsn not null,
  publication text not null,
  created_at timestamptz not null default now()
)`;

/**
 * Creates (unless they exist) the shard's publication of the sharded tables and its pgoutput slot,
 * and returns them with the slot's consistent point. The slot's creation waits for transactions
 * running on the shard to end (PostgreSQL's rule), so a long transaction there delays it.
 *
 * Call it BEFORE the shard's fence first makes the shard an owner: a slot streams only what commits
 * after its consistent point, so writes the shard took before would never reach legacy. Dropping
 * it (dropReverseSlot) leaves legacy's origin of it: drop that with dropSlotOrigins(legacy, slot).
 */
export async function ensureReverseSlot(
  shard: pg.Pool,
  input: {
    planId: string;
    shardOrdinal: number;
    schema: SourceSchema;
    /** How long the slot's creation may wait for the server's running transactions. */
    createTimeoutMs?: number;
  },
): Promise<ReverseSlot> {
  const slot = reverseSlotName(input.planId, input.shardOrdinal);
  const publication = slot;
  const tables = input.schema.tables
    .filter((t) => t.kind === "sharded")
    .map((t) => ({ schema: t.schema, table: t.name }));
  const client = await checkOut(shard);
  try {
    await client.query("select pg_advisory_lock($1, hashtext($2))", [REVERSE_SLOT_LOCK_CLASS, slot]);
    try {
      await client.query(recordTableSql);
      const { rows } = await client.query<{ slot_lsn: string }>(
        `select slot_lsn::text from ${FENCE_SCHEMA}.reverse_slot where slot_name = $1`,
        [slot],
      );
      const recorded = rows[0] ? parseLsn(rows[0].slot_lsn) : null;
      const status = await readSlotStatus(client, slot);
      const { rowCount: published } = await client.query("select 1 from pg_publication where pubname = $1", [
        publication,
      ]);
      if (recorded !== null && status !== null && published) return { slot, slotLsn: recorded, publication };

      // Something is missing: what exists without its partner was never streamed from (the record
      // is written last), so it is made again from nothing.
      if (status !== null) await dropSlot(client, slot, { terminateActive: true });
      await client.query(`delete from ${FENCE_SCHEMA}.reverse_slot where slot_name = $1`, [slot]);
      await dropPublication(client, publication);
      await createPublication(client, publication, tables);
      const slotLsn = await createSlotWithin(client, slot, input.createTimeoutMs ?? SLOT_CREATE_TIMEOUT_MS);
      await client.query(
        `insert into ${FENCE_SCHEMA}.reverse_slot (slot_name, slot_lsn, publication) values ($1, $2::pg_lsn, $3)`,
        [slot, formatLsn(slotLsn), publication],
      );
      return { slot, slotLsn, publication };
    } finally {
      await client.query("select pg_advisory_unlock($1, hashtext($2))", [REVERSE_SLOT_LOCK_CLASS, slot]);
    }
  } finally {
    client.release();
  }
}

/**
 * Found by h-break (break-long-writer.test.ts): the slot's creation waits for EVERY transaction
 * running on the shard's server to end, with no bound — one long or idle-in-transaction session
 * there held a first cutover to that shard in 'prechecking' for as long as it lived, saying
 * nothing (and the reverse stream's own call with it). Bounded: past the timeout the creation is
 * cancelled (PostgreSQL drops a slot whose creation failed), and the error names the transactions
 * it waited for, so the cutover aborts before freezing anything with a message to act on.
 */
export const SLOT_CREATE_TIMEOUT_MS = 15_000;

async function createSlotWithin(client: pg.PoolClient, slot: string, timeoutMs: number): Promise<bigint> {
  await client.query(`set statement_timeout = ${Math.max(1, Math.round(timeoutMs))}`);
  try {
    return await createSlot(client, slot);
  } catch (error) {
    const cancelled = (e: unknown): boolean =>
      (e as { code?: string })?.code === "57014" || (e instanceof Error && cancelled(e.cause));
    if (!cancelled(error)) throw error;
    const { rows } = await client
      .query<{ pid: number; datname: string | null; since: string | null; state: string | null }>(
        `select pid, datname, to_char(xact_start, 'YYYY-MM-DD"T"HH24:MI:SS') as since, state
         from pg_stat_activity
         where pid <> pg_backend_pid() and (backend_xid is not null or backend_xmin is not null)
           and backend_type = 'client backend'
         order by xact_start nulls last limit 3`,
      )
      .catch(() => ({ rows: [] }));
    const who = rows.map(
      (r) => `pid ${r.pid} (database ${r.datname}, ${r.state}, in a transaction since ${r.since})`,
    );
    throw new Error(
      `The reverse replication slot "${slot}" could not be created within ${timeoutMs} ms: PostgreSQL creates it only once every transaction running on the shard's server has ended${who.length ? `, and these had not: ${who.join("; ")}` : ""}. Nothing was frozen. End or wait for those transactions, then try again.`,
      { cause: error },
    );
  } finally {
    await client.query("reset statement_timeout").catch(() => {});
  }
}

/** Drops the shard's reverse slot, publication and record (the movement ended). */
export async function dropReverseSlot(shard: pg.Pool, input: { planId: string; shardOrdinal: number }) {
  const slot = reverseSlotName(input.planId, input.shardOrdinal);
  await dropSlot(shard, slot, { terminateActive: true });
  await dropPublication(shard, slot);
  await shard
    .query(`delete from ${FENCE_SCHEMA}.reverse_slot where slot_name = $1`, [slot])
    .catch((error: { code?: string }) => {
      if (error.code !== "42P01") throw error;
    });
}
