// The replication lag of a plan over a window, both ways: forward (legacy → shards, `cdc.lag_ms`)
// and reverse (shards → legacy, `cdc.reverse_lag_ms`, recorded once a tenant is on a shard). The
// overview's chart reads only these two metrics, not every sample of the movement.
import { db } from "../../db";
import { FORWARD_LAG_METRIC, REVERSE_LAG_METRIC } from "../../engine/cutover/precheck";
import { AppError } from "../../errors";

export interface LagSeries {
  forward: { t: number; value: number }[];
  reverse: { t: number; value: number }[];
}

export async function lagSeries(planId: string, minutes: number, now = new Date()): Promise<LagSeries> {
  const plan = await db().plan.findUnique({ where: { id: planId }, select: { id: true } });
  if (!plan) throw new AppError("NOT_FOUND", "No such plan: it may have been removed, or the link is wrong.");
  const samples = await db().metricSample.findMany({
    where: {
      planId,
      name: { in: [FORWARD_LAG_METRIC, REVERSE_LAG_METRIC] },
      at: { gte: new Date(now.getTime() - minutes * 60_000) },
    },
    orderBy: { at: "asc" },
    select: { name: true, value: true, at: true },
  });
  const points = (name: string) =>
    samples.filter((s) => s.name === name).map((s) => ({ t: s.at.getTime(), value: s.value }));
  return { forward: points(FORWARD_LAG_METRIC), reverse: points(REVERSE_LAG_METRIC) };
}
