// Everything an engine job needs about one plan's data movement, loaded from the store: the
// schema snapshot taken at start, the placement, and pools to legacy and every shard.
import type pg from "pg";
import { db } from "../../db";
import { connectionUrlFor } from "../../services/databases/databases";
import type { SourceSchema } from "../analysis/introspect";
import { hashPlacement, type Placement } from "../router/placement";
import { enginePool } from "../sql/pools";

export interface MovementContext {
  planId: string;
  schema: SourceSchema;
  placement: Placement;
  sourceUrl: string;
  source: pg.Pool;
  shardUrls: string[];
  shards: pg.Pool[];
  publicationName: string;
  slotName: string;
}

export async function loadMovementContext(planId: string): Promise<MovementContext> {
  const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId } });
  const plan = await db().plan.findUniqueOrThrow({
    where: { id: planId },
    include: { shards: { orderBy: { ordinal: "asc" } } },
  });
  const sourceUrl = await connectionUrlFor(plan.sourceDatabaseId);
  const shardUrls = await Promise.all(plan.shards.map((s) => connectionUrlFor(s.databaseId)));
  return {
    planId,
    schema: movement.sourceSchema as unknown as SourceSchema,
    placement: hashPlacement(plan.shards.length),
    sourceUrl,
    source: enginePool(sourceUrl),
    shardUrls,
    shards: shardUrls.map((url) => enginePool(url)),
    publicationName: movement.publicationName,
    slotName: movement.slotName,
  };
}

export async function recordEngineEvent(
  planId: string,
  level: "info" | "warn" | "error",
  source: string,
  message: string,
) {
  await db().engineEvent.create({ data: { planId, level, source, message } });
}

export async function recordMetric(planId: string, name: string, value: number) {
  await db().metricSample.create({ data: { planId, name, value } });
}
