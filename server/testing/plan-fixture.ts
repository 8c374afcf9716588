// A plan ready for data movement: legacy and shards registered, advanced to "Two-way CDC".
import type { Actor } from "../services/actor";
import { registerDatabase } from "../services/databases/databases";
import { createPlan, transitionPlan } from "../services/plans/plans";

export async function planAtTwoWayCdc(actor: Actor, name: string, legacyUrl: string, shardUrls: string[]) {
  const source = await registerDatabase(actor, { name: "legacy", kind: "legacy", url: legacyUrl });
  const shardIds: string[] = [];
  for (const [i, url] of shardUrls.entries()) {
    shardIds.push((await registerDatabase(actor, { name: `shard-${i}`, kind: "shard", url })).id);
  }
  let plan = await createPlan(actor, {
    name,
    sourceDatabaseId: source.id,
    shardDatabaseIds: shardIds,
    shardKeyColumn: "tenant_id",
  });
  for (const reason of ["key analysed", "router deployed"]) {
    plan = await transitionPlan(actor, {
      planId: plan.id,
      expectedVersion: plan.version,
      event: "advance",
      reason,
    });
  }
  return plan;
}
