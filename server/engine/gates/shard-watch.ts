// Every worker probes the shards of every plan whose data is moving (movement running or paused, or
// failed: forward CDC fails the movement when a shard stays unreachable, and that is exactly when
// the breaker's shard-down rule needs the probes to go on),
// every few seconds (shard-probe.ts), so the breaker's "shard unreachable" rule has a history to
// judge. It runs beside the supervisor's tick, as the slot watch does: an unreachable shard costs
// its connect timeout here, never in the tick. Several workers may run it: a plan probed within the
// interval by any of them is skipped (a duplicate probe is harmless, only wasted).
import { db } from "../store/db";
import { probeShards, reachabilityMetric } from "./shard-probe";

export const SHARD_WATCH_INTERVAL_MS = 5_000;

export interface ShardWatch {
  stop(): Promise<void>;
}

export async function shardWatchRound(intervalMs: number, log: (m: string) => void): Promise<void> {
  const movements = await db().dataMovement.findMany({
    where: { status: { in: ["running", "paused", "failed"] } },
    select: { planId: true },
  });
  for (const { planId } of movements) {
    const recent = await db().metricSample.findFirst({
      where: { planId, name: reachabilityMetric(0), at: { gt: new Date(Date.now() - intervalMs * 0.8) } },
      select: { id: true },
    });
    if (recent) continue;
    const results = await probeShards(planId);
    for (const r of results) if (!r.reachable) log(`[shards] plan ${planId} shard ${r.ordinal}: ${r.error}`);
  }
}

export function startShardWatch(
  options: { intervalMs?: number; log?: (m: string) => void } = {},
): ShardWatch {
  const intervalMs = options.intervalMs ?? SHARD_WATCH_INTERVAL_MS;
  const log = options.log ?? ((m: string) => console.log(m));
  let stopped = false;
  let round: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    round = round.then(() =>
      stopped
        ? undefined
        : shardWatchRound(intervalMs, log).catch((e) => log(`[shards] ${(e as Error).message}`)),
    );
  }, intervalMs);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await round;
    },
  };
}
