// What the cutover needs of replication, in one place: the drain (origin progress and drain mark on
// the new owner: cdc/drain.ts), the shard's reverse slot (cdc/reverse-slot.ts), and how far behind a
// reverse stream is.
import type pg from "pg";

import type { SourceSchema } from "../analysis/introspect";
import {
  ensureReverseSlot as createReverseSlot,
  type ReverseSlot,
  reverseSlotName,
} from "../cdc/reverse-slot";
import { formatLsn, parseLsn } from "../cdc/slot";
import { readOriginProgress } from "../cdc/target-applier";
import { FENCE_SCHEMA } from "../routing/fence-sql";

export { drainShortfallNote, reverseOriginName, waitForOriginProgress } from "../cdc/drain";

const creating = new Map<string, Promise<ReverseSlot>>();

/**
 * The shard's reverse slot, created if missing. The common case (it exists) is one read, with no
 * lock: ensureReverseSlot holds a pool connection while it waits for the shard's slot lock, and a
 * slot's creation waits for every transaction running on the server — eight cutovers queueing
 * there could empty the shard's pool under a control-plane transaction that the creation waits
 * for. Creations in this process are also one at a time per slot.
 */
export async function ensureReverseSlot(
  shard: pg.Pool,
  input: { planId: string; shardOrdinal: number; schema: SourceSchema },
): Promise<ReverseSlot> {
  const found = await findReverseSlot(shard, input);
  if (found) return found;
  const slot = reverseSlotName(input.planId, input.shardOrdinal);
  let pending = creating.get(slot);
  if (!pending) {
    pending = createReverseSlot(shard, input).finally(() => creating.delete(slot));
    creating.set(slot, pending);
  }
  return pending;
}

/** The shard's reverse slot when it is ready (one read, no lock), else null. */
export async function findReverseSlot(
  shard: pg.Pool,
  input: { planId: string; shardOrdinal: number },
): Promise<ReverseSlot | null> {
  const slot = reverseSlotName(input.planId, input.shardOrdinal);
  const ready = await shard
    .query<{ slot_lsn: string; publication: string }>(
      `select r.slot_lsn::text, r.publication from ${FENCE_SCHEMA}.reverse_slot r
       where r.slot_name = $1
         and exists (select 1 from pg_replication_slots s where s.slot_name = r.slot_name and s.database = current_database())
         and exists (select 1 from pg_publication p where p.pubname = r.publication)`,
      [slot],
    )
    .catch(() => ({ rows: [] as { slot_lsn: string; publication: string }[] }));
  const row = ready.rows[0];
  return row ? { slot, slotLsn: parseLsn(row.slot_lsn), publication: row.publication } : null;
}

/**
 * How far behind the reverse stream reading `slot` on this shard is (ms), from the walsender's own
 * flush-lag measurement (null once it is caught up: 0); null when no stream reads the slot, so
 * nothing would drain.
 */
export async function reverseLagMs(shard: pg.Pool, slot: string): Promise<number | null> {
  const { rows } = await shard.query<{ active: boolean; lag_ms: number | null }>(
    `select s.active, (extract(epoch from r.flush_lag) * 1000)::float8 as lag_ms
     from pg_replication_slots s left join pg_stat_replication r on r.pid = s.active_pid
     where s.slot_name = $1`,
    [slot],
  );
  const row = rows[0];
  if (!row?.active) return null;
  return row.lag_ms ?? 0;
}

/**
 * How long a cutover or a trip waits, before anything is frozen, for a shard's reverse stream to be
 * reading its slot. The stream starts on the worker's next tick after the slot is made (a tenant's
 * first cutover to the shard) or after a worker took over (its predecessor killed): judging the
 * slot at once read "not running" and gave a trip up (breaker-crash.test.ts, on a fresh clone), and
 * a cutover that froze before it started paid the stream's start-up inside its freeze.
 */
export const REVERSE_STREAM_WAIT_MS = 30_000;

/** The reverse lag once the slot has a reader, or null if none came within `waitMs`. */
export async function reverseLagOnceStreaming(
  shard: pg.Pool,
  slot: string,
  waitMs = REVERSE_STREAM_WAIT_MS,
): Promise<number | null> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const lag = await reverseLagMs(shard, slot);
    if (lag !== null || Date.now() >= deadline) return lag;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** One of legacy's origins of a shard's reverse slot name: the slot's consistent point, its durable progress. */
export interface ReverseOrigin {
  name: string;
  slotLsn: bigint;
  progress: bigint;
}

/**
 * Legacy's origins of a shard's reverse slot name, read on legacy alone: one per slot of that name
 * it ever applied from (the origin is named after the slot's consistent point, so a slot dropped
 * and made again gets a new one), with its durable progress.
 */
export async function legacyReverseOrigins(legacy: pg.Pool, slot: string): Promise<ReverseOrigin[]> {
  const prefix = `shardshift_${slot}_`;
  const { rows } = await legacy.query<{ roname: string }>(
    "select roname from pg_replication_origin where starts_with(roname, $1) and roname like '%\\_t0'",
    [prefix],
  );
  const origins: ReverseOrigin[] = [];
  for (const { roname } of rows) {
    const hex = roname.slice(prefix.length, -"_t0".length);
    if (!/^[0-9a-f]+$/i.test(hex)) continue;
    origins.push({
      name: roname,
      slotLsn: BigInt(`0x${hex}`),
      progress: await readOriginProgress(legacy, roname),
    });
  }
  return origins.sort((a, b) => (a.slotLsn < b.slotLsn ? -1 : a.slotLsn > b.slotLsn ? 1 : 0));
}

/**
 * Why legacy may lack writes a shard took, although the stream of its slot (consistent point
 * `slotLsn`) is drained: the slot was dropped and made again (ensureReverseSlot makes a missing slot
 * silently), a new slot streams only what commits after its consistent point, and legacy's origin of
 * the EARLIER slot stops below it — whatever the shard committed in between never reached legacy.
 * Null when no earlier slot's origin stops short of it. Legacy's origins of a slot are dropped with
 * it when the movement ends (dropSlotOrigins), so only a slot made again leaves one behind.
 */
export function reverseSlotGap(
  origins: readonly ReverseOrigin[],
  slotLsn: bigint,
  shardName: string,
): string | null {
  const short = origins.filter((o) => o.slotLsn < slotLsn && o.progress < slotLsn).at(-1);
  if (!short) return null;
  return `${shardName}'s reverse slot was made again (its consistent point ${formatLsn(slotLsn)}), but legacy's replication of the earlier slot stops at ${formatLsn(short.progress)} (origin ${short.name}): writes ${shardName} committed in between were never streamed to legacy, so its tenants cannot be flipped onto it. Check them with a parity pass and repair legacy, then drop that origin on legacy (select pg_replication_origin_drop('${short.name}')).`;
}
