// Reverse replication (shard → legacy) as the supervisor runs it: one stream per shard of a plan
// that owns a tenant or has been given one (a cutover to it made its reverse slot), on any worker,
// exactly one at a time — the same pattern as forward CDC (reverse-stream.ts has the stream).
//
// The streams run in the process's reverse CDC thread (isolated-runner.ts), not on this event
// loop: here they shared it with the supervisor's ticks, the cutovers, Prisma, the queue's jobs and
// parity, and every stall of that loop stalled their receipt and apply (forward CDC moved to a
// thread for the same reason).
// The plan's reverse lag (cdc.reverse_lag_ms: the largest over its shards, from the walsenders'
// own flush-lag measurement) is sampled every 2 s by the worker running the streams.
import type { CdcRunner } from "../cdc/cdc-runner";
import { startIsolatedRunner } from "../cdc/isolated-runner";
import { dropReverseSlot, reverseSlotName } from "../cdc/reverse-slot";
import { dropSlotOrigins } from "../cdc/target-applier";
import { db } from "../store/db";
import { loadMovementContext, recordMetric } from "../store/movement-context";
import { reverseLagMs } from "./cdc-links";
import { REVERSE_LAG_METRIC } from "./precheck";

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
          const runner = startIsolatedRunner(
            { direction: "reverse", planId, ordinal, controlPlaneUrl: options.controlPlaneUrl },
            { log: options.log },
          );
          runners.set(key, { planId, ordinal, runner });
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
