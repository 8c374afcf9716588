// What stops a cutover before anything is frozen (docs/cutover.md, step 1): shared by the
// operator's dry run (services/routing/cutover.ts) and the runner's `prechecking` step, so the
// preview names exactly the blockers the runner would abort on.
import type { CutoverDirection } from "../state/cutover";
import { db } from "../store/db";

/**
 * A lag sample older than this means the stream is not running (they are written every second or
 * so, a quiet stream's too: cdc/idle-lag.ts). SHARDSHIFT_LAG_SAMPLE_MAX_AGE_MS overrides it (tests).
 */
export const LAG_SAMPLE_MAX_AGE_MS = 30_000;

export function lagSampleMaxAgeMs(): number {
  const fromEnv = Number(process.env.SHARDSHIFT_LAG_SAMPLE_MAX_AGE_MS);
  return Number.isFinite(fromEnv) && fromEnv > 0 ? fromEnv : LAG_SAMPLE_MAX_AGE_MS;
}

/** The share of the freeze budget the feeding stream's lag may take: the rest covers fence, sequences, flip. */
export const LAG_SHARE_OF_BUDGET = 0.5;

export const FORWARD_LAG_METRIC = "cdc.lag_ms";
export const REVERSE_LAG_METRIC = "cdc.reverse_lag_ms";

/** The newest sample of `metric` for the plan, or null when none is recent (the stream is not running). */
export async function recentLagMs(
  planId: string,
  metric: string,
  now = Date.now(),
  maxAgeMs = lagSampleMaxAgeMs(),
): Promise<number | null> {
  const sample = await db().metricSample.findFirst({
    where: { planId, name: metric, at: { gt: new Date(now - maxAgeMs) } },
    orderBy: { at: "desc" },
    select: { value: true },
  });
  return sample ? sample.value : null;
}

/** The stream that carries writes into the new owner: forward for a cutover to a shard, reverse back. */
export function feedingStream(direction: CutoverDirection): { metric: string; name: string } {
  return direction === "to-shard"
    ? { metric: FORWARD_LAG_METRIC, name: "forward replication (legacy → shards)" }
    : { metric: REVERSE_LAG_METRIC, name: "reverse replication (shards → legacy)" };
}

/**
 * Pure: why the feeding stream's lag stops this cutover, or null. The drain waits for the stream
 * to apply up to the freeze position, so its lag is roughly the freeze window: a lag that does not
 * fit in the budget's share would freeze the tenant for nothing and abort.
 */
export function lagBlocker(
  direction: CutoverDirection,
  lagMs: number | null,
  budgetMs: number,
): string | null {
  const stream = feedingStream(direction);
  if (lagMs === null) {
    return `The ${stream.name} is not running (no lag measured in the last ${lagSampleMaxAgeMs() / 1000} s): the new owner could not catch up. Start or resume the data movement, then try again.`;
  }
  const allowed = Math.round(budgetMs * LAG_SHARE_OF_BUDGET);
  if (lagMs > allowed) {
    return `The ${stream.name} is ${Math.round(lagMs)} ms behind; a ${budgetMs} ms freeze budget allows at most ${allowed} ms. Wait for it to catch up (or give a larger budget), then try again.`;
  }
  return null;
}
