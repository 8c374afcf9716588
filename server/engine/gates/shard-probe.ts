// Whether each shard of a plan answers: a fresh connection and one short query within a timeout,
// recorded as a metric sample per shard (`shard.reachable.<ordinal>`: 1 answered, 0 did not). The
// trip rule needs "down for how long", which one probe cannot say: the samples' history does (the
// newest probe, and the newest one it answered). A fresh connection, not a pooled one, so a shard
// that stopped accepting connections is seen even while old pooled sessions still work.
//
// While a shard answers, the probe also records where it stood: its flushed WAL position
// (`shard.flush_lsn.<ordinal>`) and how far its reverse slot was confirmed
// (`shard.reverse_confirmed_lsn.<ordinal>`). Once it is down these are the control plane's last
// knowledge of it: the breaker flips its tenants back to legacy only if legacy's reverse progress
// covers that flushed position (docs/breaker.md, "A shard that is down"). LSNs are stored as the
// sample's double: exact below 2^53 bytes of WAL (8 PiB), far beyond any shard's life.
import { reverseSlotName } from "../cdc/reverse-slot";
import { parseLsn } from "../cdc/slot";
import { withClient } from "../sql/connect";
import { db } from "../store/db";
import { databaseUrl } from "../store/movement-context";

export const SHARD_PROBE_TIMEOUT_MS = 3_000;

export function reachabilityMetric(ordinal: number): string {
  return `shard.reachable.${ordinal}`;
}

/** The shard's flushed WAL position at its newest answered probe. */
export function flushLsnMetric(ordinal: number): string {
  return `shard.flush_lsn.${ordinal}`;
}

/** Its reverse slot's confirmed position (durable on legacy) at the same probe. */
export function reverseConfirmedMetric(ordinal: number): string {
  return `shard.reverse_confirmed_lsn.${ordinal}`;
}

/**
 * The consistent point of the reverse slot whose confirmed position the same probe read: which
 * slot the proof comes from (a slot dropped and made again starts a new origin on legacy, and its
 * confirmed position says nothing of the writes before it: judgeDownShards in run-rollback.ts).
 */
export function reverseSlotLsnMetric(ordinal: number): string {
  return `shard.reverse_slot_lsn.${ordinal}`;
}

const PROBE_SQL = `select pg_current_wal_flush_lsn()::text as flush,
  (select confirmed_flush_lsn::text from pg_replication_slots where slot_name = $1) as confirmed,
  to_regclass('shardshift.reverse_slot') is not null as recorded`;
const SLOT_LSN_SQL = "select slot_lsn::text as slot_lsn from shardshift.reverse_slot where slot_name = $1";

export interface ShardProbeResult {
  ordinal: number;
  reachable: boolean;
  error: string | null;
  flushLsn: bigint | null;
  reverseConfirmedLsn: bigint | null;
  /** The consistent point of the slot that confirmed it (null: not recorded there). */
  reverseSlotLsn: bigint | null;
}

export async function probeShards(
  planId: string,
  timeoutMs = SHARD_PROBE_TIMEOUT_MS,
): Promise<ShardProbeResult[]> {
  const shards = await db().planShard.findMany({ where: { planId }, orderBy: { ordinal: "asc" } });
  const results = await Promise.all(
    shards.map(async (s): Promise<ShardProbeResult> => {
      try {
        const url = await databaseUrl(s.databaseId);
        const row = await withClient(
          url,
          async (c) => {
            // The connect has its timeout; the query gets one too (a hung server accepts and never answers).
            await c.query(`set statement_timeout = ${Math.max(100, Math.round(timeoutMs))}`);
            const slot = reverseSlotName(planId, s.ordinal);
            const { rows } = await c.query<{ flush: string; confirmed: string | null; recorded: boolean }>(
              PROBE_SQL,
              [slot],
            );
            const slotLsn =
              rows[0]?.confirmed && rows[0].recorded
                ? (await c.query<{ slot_lsn: string }>(SLOT_LSN_SQL, [slot])).rows[0]?.slot_lsn
                : undefined;
            return rows[0] ? { ...rows[0], slotLsn } : undefined;
          },
          { timeoutMs, applicationName: "shardshift-probe" },
        );
        return {
          ordinal: s.ordinal,
          reachable: true,
          error: null,
          flushLsn: row ? parseLsn(row.flush) : null,
          reverseConfirmedLsn: row?.confirmed ? parseLsn(row.confirmed) : null,
          reverseSlotLsn: row?.slotLsn ? parseLsn(row.slotLsn) : null,
        };
      } catch (error) {
        return {
          ordinal: s.ordinal,
          reachable: false,
          error: (error as Error).message,
          flushLsn: null,
          reverseConfirmedLsn: null,
          reverseSlotLsn: null,
        };
      }
    }),
  );
  const at = new Date();
  await db().metricSample.createMany({
    data: results.flatMap((r) => [
      { planId, name: reachabilityMetric(r.ordinal), value: r.reachable ? 1 : 0, at },
      ...(r.flushLsn === null
        ? []
        : [{ planId, name: flushLsnMetric(r.ordinal), value: Number(r.flushLsn), at }]),
      ...(r.reverseConfirmedLsn === null
        ? []
        : [{ planId, name: reverseConfirmedMetric(r.ordinal), value: Number(r.reverseConfirmedLsn), at }]),
      ...(r.reverseSlotLsn === null
        ? []
        : [{ planId, name: reverseSlotLsnMetric(r.ordinal), value: Number(r.reverseSlotLsn), at }]),
    ]),
  });
  return results;
}

/** What the control plane last knew of a shard while it answered (null: never recorded). */
export async function lastKnownPosition(
  planId: string,
  ordinal: number,
): Promise<{
  at: Date;
  flushLsn: bigint;
  reverseConfirmedLsn: bigint | null;
  reverseSlotLsn: bigint | null;
} | null> {
  const flush = await db().metricSample.findFirst({
    where: { planId, name: flushLsnMetric(ordinal) },
    orderBy: { at: "desc" },
    select: { at: true, value: true },
  });
  if (!flush) return null;
  const [confirmed, slot] = await Promise.all(
    [reverseConfirmedMetric(ordinal), reverseSlotLsnMetric(ordinal)].map((name) =>
      db().metricSample.findFirst({ where: { planId, name, at: flush.at }, select: { value: true } }),
    ),
  );
  return {
    at: flush.at,
    flushLsn: BigInt(Math.round(flush.value)),
    reverseConfirmedLsn: confirmed ? BigInt(Math.round(confirmed.value)) : null,
    reverseSlotLsn: slot ? BigInt(Math.round(slot.value)) : null,
  };
}
