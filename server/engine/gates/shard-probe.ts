// Whether each shard of a plan answers: a fresh connection and `select 1` within a short timeout,
// recorded as a metric sample per shard (`shard.reachable.<ordinal>`: 1 answered, 0 did not). The
// trip rule needs "down for how long", which one probe cannot say: the samples' history does (the
// newest probe, and the newest one it answered). A fresh connection, not a pooled one, so a shard
// that stopped accepting connections is seen even while old pooled sessions still work.
import { withClient } from "../sql/connect";
import { db } from "../store/db";
import { databaseUrl } from "../store/movement-context";

export const SHARD_PROBE_TIMEOUT_MS = 3_000;

export function reachabilityMetric(ordinal: number): string {
  return `shard.reachable.${ordinal}`;
}

export async function probeShards(
  planId: string,
  timeoutMs = SHARD_PROBE_TIMEOUT_MS,
): Promise<{ ordinal: number; reachable: boolean; error: string | null }[]> {
  const shards = await db().planShard.findMany({ where: { planId }, orderBy: { ordinal: "asc" } });
  const results = await Promise.all(
    shards.map(async (s) => {
      try {
        const url = await databaseUrl(s.databaseId);
        await withClient(url, (c) => c.query("select 1"), { timeoutMs, applicationName: "shardshift-probe" });
        return { ordinal: s.ordinal, reachable: true, error: null };
      } catch (error) {
        return { ordinal: s.ordinal, reachable: false, error: (error as Error).message };
      }
    }),
  );
  await db().metricSample.createMany({
    data: results.map((r) => ({ planId, name: reachabilityMetric(r.ordinal), value: r.reachable ? 1 : 0 })),
  });
  return results;
}
