// Reverse replication (shard → legacy) as the supervisor runs it: one stream per shard of a plan
// that owns a tenant or has been given one (a cutover to it made its reverse slot), on any worker,
// exactly one at a time — the same pattern as forward CDC: a session advisory lock on the control
// plane per (plan, shard), taken by the stream's own connection; a killed worker's lock dies with
// it and the next tick anywhere takes the stream over from the slot's confirmed position.
//
// Each stream follows the shard's fence (ReverseOwnershipRoute): it carries exactly the tenants
// the shard owns, changing at the fence messages' positions in the shard's WAL.
// The plan's reverse lag (cdc.reverse_lag_ms: the largest over its shards, from the walsenders'
// own flush-lag measurement) is sampled every 2 s by the worker running the streams.
import pg from "pg";
import { type CdcRunner, startRunner } from "../cdc/cdc-runner";
import { ReverseOwnershipRoute, readFenceOwnership } from "../cdc/ownership-route";
import { startReverseCdc } from "../cdc/reverse-cdc";
import { dropReverseSlot, ensureReverseSlot, reverseSlotName } from "../cdc/reverse-slot";
import { dropSlotOrigins } from "../cdc/target-applier";
import { db } from "../store/db";
import { loadMovementContext, recordMetric } from "../store/movement-context";
import { reverseLagMs } from "./cdc-links";
import { REVERSE_LAG_METRIC } from "./precheck";

const REVERSE_CDC_LOCK_CLASS = 7_363_201;
const LAG_SAMPLE_EVERY_MS = 2_000;

/** The ordinals of the plan's shards that need a reverse stream. */
async function shardsWithReverse(planId: string): Promise<number[]> {
  const rows = await db().$queryRaw<{ ordinal: number }[]>`
    select s.ordinal from plan_shard s
    where s.plan_id = ${planId}::uuid and (
      exists (select 1 from tenant_route r where r.plan_id = s.plan_id and r.owner_database_id = s.database_id)
      or exists (select 1 from routing_change c where c.plan_id = s.plan_id and c.to_owner_id = s.database_id)
      or exists (select 1 from tenant_cutover t where t.plan_id = s.plan_id and t.to_database_id = s.database_id))
    order by s.ordinal`;
  return rows.map((r) => r.ordinal);
}

function startReverseStream(
  planId: string,
  ordinal: number,
  options: { controlPlaneUrl: string; log: (m: string) => void },
): CdcRunner {
  const log = (m: string) => options.log(`[reverse ${planId.slice(0, 8)}/${ordinal}] ${m}`);
  return startRunner(async (control) => {
    const lock = new pg.Client({
      connectionString: options.controlPlaneUrl,
      application_name: "shardshift-reverse-lock",
    });
    lock.on("error", () => {});
    await lock.connect();
    try {
      const { rows } = await lock.query<{ ok: boolean }>(
        "select pg_try_advisory_lock($1, hashtext($2)) as ok",
        [REVERSE_CDC_LOCK_CLASS, `${planId}:${ordinal}`],
      );
      if (!rows[0]?.ok) return; // another worker streams this shard
      const ctx = await loadMovementContext(planId);
      const shard = ctx.shards[ordinal];
      const shardUrl = ctx.shardUrls[ordinal];
      const row = await db().planShard.findUnique({
        where: { planId_ordinal: { planId, ordinal } },
        select: { databaseId: true, database: { select: { name: true } } },
      });
      if (!shard || !shardUrl || !row) return;
      const reverse = await ensureReverseSlot(shard, { planId, shardOrdinal: ordinal, schema: ctx.schema });
      if (control.stopping) return;
      const inner = startReverseCdc({
        shardUrl,
        shard,
        shardName: row.database.name,
        slot: reverse.slot,
        slotLsn: reverse.slotLsn,
        publication: reverse.publication,
        legacyUrl: ctx.sourceUrl,
        legacy: ctx.source,
        schema: ctx.schema,
        route: async () => new ReverseOwnershipRoute(await readFenceOwnership(shard, planId, row.databaseId)),
        log,
      });
      control.onStop(() => inner.stop());
      await inner.ended;
      if (inner.progressed) control.progressed();
      if (inner.failure) throw inner.failure;
    } finally {
      await lock.end().catch(() => {});
    }
  }, log);
}

export interface ReverseStreams {
  /** Runs the streams `plans` need here, stops those of other plans, samples the lag. */
  tick(plans: readonly string[]): Promise<void>;
  /** Stops this worker's streams of a plan (its movement is being cancelled). */
  stopPlan(planId: string): Promise<void>;
  stop(): Promise<void>;
}

export function startReverseStreams(options: {
  controlPlaneUrl: string;
  log: (m: string) => void;
}): ReverseStreams {
  const runners = new Map<string, { planId: string; ordinal: number; runner: CdcRunner }>();
  const lastSample = new Map<string, number>();

  async function sampleLag(planId: string) {
    const mine = [...runners.values()].filter((r) => r.planId === planId && !r.runner.finished);
    if (mine.length === 0) return;
    const now = Date.now();
    if (now - (lastSample.get(planId) ?? 0) < LAG_SAMPLE_EVERY_MS) return;
    lastSample.set(planId, now);
    const ctx = await loadMovementContext(planId);
    let worst: number | null = null;
    for (const { ordinal } of mine) {
      const shard = ctx.shards[ordinal];
      if (!shard) continue;
      const lag = await reverseLagMs(shard, reverseSlotName(planId, ordinal)).catch(() => null);
      // A stream of ours not reading (yet): no sample, rather than a lag of 0 that is not true.
      if (lag === null) return;
      worst = Math.max(worst ?? 0, lag);
    }
    if (worst !== null) await recordMetric(planId, REVERSE_LAG_METRIC, worst);
  }

  return {
    async tick(plans) {
      const wanted = new Set<string>();
      for (const planId of plans) {
        for (const ordinal of await shardsWithReverse(planId)) {
          const key = `${planId}:${ordinal}`;
          wanted.add(key);
          const current = runners.get(key);
          if (current && !current.runner.finished) continue;
          runners.set(key, { planId, ordinal, runner: startReverseStream(planId, ordinal, options) });
        }
      }
      for (const [key, { runner }] of runners) {
        if (!wanted.has(key)) {
          await runner.stop();
          runners.delete(key);
        }
      }
      for (const planId of plans) await sampleLag(planId).catch(() => {});
    },
    async stopPlan(planId) {
      for (const [key, entry] of runners) {
        if (entry.planId !== planId) continue;
        await entry.runner.stop();
        runners.delete(key);
      }
    },
    async stop() {
      await Promise.all([...runners.values()].map((r) => r.runner.stop()));
      runners.clear();
    },
  };
}

/**
 * A cancelled movement's reverse replication, gone: each shard's reverse slot, publication and
 * record, and the reverse origins on legacy. Throws (the cancel retries next tick) when legacy's
 * origin is still held by a stream another worker has not stopped yet.
 */
export async function dropReverseReplication(planId: string): Promise<void> {
  const ctx = await loadMovementContext(planId);
  for (const [ordinal, shard] of ctx.shards.entries()) {
    await dropReverseSlot(shard, { planId, shardOrdinal: ordinal });
    await dropSlotOrigins(ctx.source, reverseSlotName(planId, ordinal));
  }
}
