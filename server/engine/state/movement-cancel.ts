// When a data movement may be cancelled. Cancel drops the replication slot and publication on
// legacy; once a tenant could depend on replication, that slot is the way back (the breaker drains
// it to roll tenants back), so dropping it would strand them. Pure: callers pass the facts.
//
// Refused:
//   - in "Live rollback breaker" and every later phase: the rollout relies on replication there;
//   - while any tenant is routed to a shard (reverse replication carries its writes back to legacy);
//   - while a cutover is in flight (it may still put a tenant on a shard, or be bringing one back).
// Otherwise allowed (the movement state machine in ./movement.ts still decides from its status).
import { PHASE_INFO, PLAN_PHASES, type PlanPhase } from "../../schemas/plan";

export interface CancelFacts {
  phase: PlanPhase;
  /** Tenants the routing map sends to a shard. */
  tenantsOnShards: number;
  /** Cutover attempts not yet done or aborted. */
  cutoversInFlight?: number;
}

const FIRST_DEPENDENT_PHASE: PlanPhase = "live_rollback";

export type CancelOutcome = { allowed: true } | { allowed: false; reason: string };

export function decideMovementCancel(facts: CancelFacts): CancelOutcome {
  if (facts.tenantsOnShards > 0) {
    const n = facts.tenantsOnShards;
    return {
      allowed: false,
      reason:
        `${n.toLocaleString("en")} tenant${n === 1 ? " is" : "s are"} served by a shard and rely on replication back to legacy. ` +
        "Cut them over back to legacy first (the routing page); then the movement can be cancelled.",
    };
  }
  if ((facts.cutoversInFlight ?? 0) > 0) {
    const n = facts.cutoversInFlight ?? 0;
    return {
      allowed: false,
      reason:
        `${n === 1 ? "A tenant cutover is" : `${n} tenant cutovers are`} in flight and rely on this replication. ` +
        "Wait for them to end (done or aborted, on the routing page), then cancel again.",
    };
  }
  if (PLAN_PHASES.indexOf(facts.phase) >= PLAN_PHASES.indexOf(FIRST_DEPENDENT_PHASE)) {
    return {
      allowed: false,
      reason:
        `The plan is in “${PHASE_INFO[facts.phase].title}”: the rollback path depends on this replication, ` +
        `and cancelling would drop its slot. Revert the plan to “${PHASE_INFO.automated_parity.title}” first if the migration must stop.`,
    };
  }
  return { allowed: true };
}
