// The fleet view: every plan with the figures a TPM checks each morning (progress, ETA, forward
// lag, parity, breaker, tenants on shards), from the same figures the plan pages show.
import { planFigures } from "./figures";
import { listPlans } from "./plans";

export async function listFleet(options: { includeArchived?: boolean } = {}) {
  const plans = await listPlans(options);
  const figures = await planFigures(plans.map((p) => p.id));
  return plans.flatMap((plan) => {
    const f = figures.get(plan.id);
    if (!f) return [];
    const { tasks: _tasks, ...backfill } = f.backfill;
    return [
      {
        id: plan.id,
        name: plan.name,
        phase: plan.phase,
        status: plan.status,
        shardKeyColumn: plan.shardKeyColumn,
        settings: { cdcLagThresholdMs: plan.settings.cdcLagThresholdMs },
        source: plan.source,
        shards: plan.shards,
        updatedAt: plan.updatedAt,
        figures: { ...f, backfill },
      },
    ];
  });
}
