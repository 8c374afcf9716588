// The plan lifecycle: an explicit state machine over the eight DATA-BALANCE steps.
//
// The persisted phase is how far the operator has taken the rollout; every move is judged from the
// engine's facts (EngineFacts), never from labels alone. The timeline beside it (./plan-steps.ts)
// shows each step's own state — steps overlap: CDC and backfill run together, parity stays on.
//
// States: the phases in PLAN_PHASES order, plus the orthogonal status active | archived.
// Events and their rules (the only transitions there are):
//   advance  phase i → i+1    only when what phase i stands for is true (EXIT_GUARDS) and phase
//                             i+1's machinery exists (NOT_AVAILABLE); never from `complete`
//   revert   phase i → the nearest earlier phase that exists, from application_router …
//                             live_rollback; clean-up has already dropped replication, so it
//                             cannot be undone; Two-way CDC is kept while a slot is held;
//                             bit-by-bit routing is kept while a tenant is on a shard
//   archive  active → archived  only while nothing runs against the databases
//                             (define_key, application_router, complete): archiving
//                             mid-migration would orphan replication slots
// An archived plan refuses every event: history is kept, nothing restarts from it.
//
// The rollout's phases follow the tenants (the routing map's owners) and the breaker:
//   bit-by-bit routing  entered when cohort 1 may be promoted (a ladder drawn, its gates open —
//                       or a tenant already on a shard); left only with every tenant the census
//                       counted on a shard and no cutover in flight
//   live rollback       entered with parity holding, every tenant on a shard and the breaker armed;
//                       its soak counts from when both became true (breakerSoakSince), not from the
//                       advance, so a trip or a tenant back on legacy restarts it
//
// Pure: callers pass the facts (phase, status, when the current phase began, settings, engine
// facts); the store persists the outcome. Later engine steps add their guards here, in one place,
// and take their phase off NOT_AVAILABLE.
import { PHASE_INFO, PLAN_PHASES, type PlanPhase, type TPlanSettings } from "../../schemas/plan";
import {
  backfillDone,
  breakerSoakSince,
  cdcStreaming,
  type EngineFacts,
  everyTenantOnShards,
  NO_ENGINE_FACTS,
  parityStanding,
} from "./plan-facts";

export type PlanEvent = "advance" | "revert" | "archive";
export type PlanStatus = "active" | "archived";

export interface PlanFacts {
  phase: PlanPhase;
  status: PlanStatus;
  phaseEnteredAt: Date;
  settings: TPlanSettings;
  now: Date;
  /** A data movement holds a replication slot on legacy (running, paused, failed or cancelling). */
  replicationActive?: boolean;
  /** What the engine has done; none when omitted. */
  engine?: EngineFacts;
}

export type TransitionOutcome =
  | { allowed: true; to: { phase: PlanPhase; status: PlanStatus } }
  | { allowed: false; reason: string };

const ARCHIVABLE: ReadonlySet<PlanPhase> = new Set(["define_key", "application_router", "complete"]);
const REVERTIBLE: ReadonlySet<PlanPhase> = new Set([
  "application_router",
  "two_way_cdc",
  "async_backfill",
  "bit_by_bit_routing",
  "automated_parity",
  "live_rollback",
]);

/** Steps whose machinery does not exist yet: they cannot be entered (nor, if a plan sits in one, left forwards). */
export const NOT_AVAILABLE: Readonly<Partial<Record<PlanPhase, string>>> = {
  native_cleanup: "clean-up is not built yet",
};

export function notAvailableReason(phase: PlanPhase): string | null {
  const why = NOT_AVAILABLE[phase];
  return why ? `“${PHASE_INFO[phase].title}” is not available yet: ${why}.` : null;
}

const DAY_MS = 86_400_000;
const nf = new Intl.NumberFormat("en");

/** Why cohort 1 may not be promoted yet (entering bit-by-bit routing), or null if it may. */
function firstCohortBlocked(engine: EngineFacts): string | null {
  const cohorts = engine.cohorts;
  if (!cohorts || cohorts.drawn === 0) return "No cohort ladder is drawn: draw it on Cohorts, then advance.";
  // Promoted already (an admin's override, or a tenant cut over by hand): the routing has begun.
  if (cohorts.promoted > 0 || (engine.tenantsOnShards ?? 0) > 0) return null;
  if (!cohorts.firstGates) return "Cohort 1's gates have not been judged: open Cohorts to see them.";
  return cohorts.firstGates.open
    ? null
    : `Cohort 1 may not be promoted yet: ${cohorts.firstGates.why ?? "a gate does not pass"} Advance once its gates pass (Cohorts).`;
}

/** What must be true to leave a phase forwards, from the engine's facts; null = it is. */
const EXIT_GUARDS: Partial<Record<PlanPhase, (facts: PlanFacts, engine: EngineFacts) => string | null>> = {
  two_way_cdc: (_, engine) => {
    if (!cdcStreaming(engine)) {
      return engine.movement?.status === "failed"
        ? "Forward CDC stopped with an error: fix it and retry the movement (Backfill & CDC), then advance."
        : "Forward CDC is not streaming: start the data movement (Backfill & CDC) first.";
    }
    if (!engine.movement?.confirmedLsn) {
      return "Forward CDC has not confirmed any change to legacy's slot yet: wait a few seconds, then advance.";
    }
    return null;
  },
  // Leaving the backfill enters bit-by-bit routing: only once the first cohort may be promoted.
  async_backfill: (_, engine) => {
    if (!backfillDone(engine)) {
      const { tables, tablesDone } = engine.backfill;
      return tables === 0
        ? "Nothing has been copied: start the data movement (Backfill & CDC) first."
        : `The backfill is not done: ${tablesDone} of ${tables} tables are copied. Advance once every table is.`;
    }
    return firstCohortBlocked(engine);
  },
  bit_by_bit_routing: (_, engine) => {
    const total = engine.tenantsTotal ?? 0;
    const on = engine.tenantsOnShards ?? 0;
    if (total === 0)
      return "The census has counted no tenant yet: wait for it (Backfill & CDC), then promote the cohorts.";
    if (!everyTenantOnShards(engine)) {
      return `${nf.format(total - on)} of ${nf.format(total)} tenants are still on legacy: promote the remaining cohorts (Cohorts), then advance.`;
    }
    const moving = engine.tenantsCuttingOver ?? 0;
    if (moving > 0)
      return `${moving} tenant cutover${moving === 1 ? " is" : "s are"} still in flight: wait for ${moving === 1 ? "it" : "them"} to end.`;
    return null;
  },
  // Leaving parity enters the live rollback breaker's soak: parity holds, every tenant is on the
  // shards and the breaker is armed.
  automated_parity: (facts, engine) => {
    const standing = parityStanding(engine, facts.now);
    if (!standing.holds) {
      return `Parity does not hold: ${standing.why}. Advance once a full check passes with every row verified.`;
    }
    if (!everyTenantOnShards(engine)) {
      const total = engine.tenantsTotal ?? 0;
      return total === 0
        ? "The census has counted no tenant: the breaker's soak needs every tenant on the shards."
        : `${nf.format(total - (engine.tenantsOnShards ?? 0))} of ${nf.format(total)} tenants are on legacy: the breaker's soak needs every tenant on the shards (promote them on Cohorts).`;
    }
    const breaker = engine.breaker?.status;
    if (breaker !== "armed") {
      return `The breaker is ${breaker ? breaker.replace("_", " ") : "not known"}: the soak starts with it armed (let its rollback end, re-arm it, and promote the rolled-back tenants again).`;
    }
    return null;
  },
  // The soak counts from the facts (breaker armed with every tenant on the shards), not from when
  // the operator advanced: a trip or a tenant back on legacy restarts it.
  live_rollback: (facts, engine) => {
    const since = breakerSoakSince(engine);
    if (!since) {
      return everyTenantOnShards(engine)
        ? `The breaker is ${engine.breaker?.status.replace("_", " ") ?? "not known"}: the soak counts only while it is armed (re-arm it once its rollback has ended).`
        : "Not every tenant is on the shards (a rollback moved some back): promote them again; the soak restarts then.";
    }
    const soakEnds = since.getTime() + facts.settings.soakDays * DAY_MS;
    if (facts.now.getTime() >= soakEnds) return null;
    const daysLeft = Math.ceil((soakEnds - facts.now.getTime()) / DAY_MS);
    return (
      `The soak is not over: clean-up starts ${facts.settings.soakDays} days after the breaker was armed with every tenant on the shards ` +
      `(${daysLeft} day${daysLeft === 1 ? "" : "s"} left). Shorten soakDays in settings (at least 7) if that is intended.`
    );
  },
};

export function phaseIndex(phase: PlanPhase): number {
  return PLAN_PHASES.indexOf(phase);
}

/** Why phase `phase` cannot be left forwards now, or null if it can. */
export function exitBlocked(facts: PlanFacts): string | null {
  const engine = facts.engine ?? NO_ENGINE_FACTS;
  return notAvailableReason(facts.phase) ?? EXIT_GUARDS[facts.phase]?.(facts, engine) ?? null;
}

export function decideTransition(facts: PlanFacts, event: PlanEvent): TransitionOutcome {
  if (facts.status === "archived") {
    return {
      allowed: false,
      reason: "This plan is archived and read-only. Create a new plan to migrate again.",
    };
  }
  const index = phaseIndex(facts.phase);
  const title = PHASE_INFO[facts.phase].title;
  switch (event) {
    case "advance": {
      const next = PLAN_PHASES[index + 1];
      if (!next) return { allowed: false, reason: "The plan is complete: there is no further phase." };
      const unavailable = notAvailableReason(next);
      if (unavailable) return { allowed: false, reason: `${unavailable} The plan stays in “${title}”.` };
      const blocked = exitBlocked(facts);
      if (blocked) return { allowed: false, reason: blocked };
      return { allowed: true, to: { phase: next, status: "active" } };
    }
    case "revert": {
      if (facts.phase === "two_way_cdc" && facts.replicationActive) {
        return {
          allowed: false,
          reason:
            "The data movement still holds a replication slot on legacy. Cancel it first (Backfill & CDC), which drops the slot, then revert.",
        };
      }
      if (facts.phase === "bit_by_bit_routing" && (facts.engine?.tenantsOnShards ?? 0) > 0) {
        const n = facts.engine?.tenantsOnShards ?? 0;
        return {
          allowed: false,
          reason: `${nf.format(n)} tenant${n === 1 ? " is" : "s are"} on a shard: bit-by-bit routing has begun. Roll ${n === 1 ? "it" : "them"} back to legacy (the breaker) first, then revert.`,
        };
      }
      // Steps that were never available are skipped: a plan moved past them never ran them.
      const previous = PLAN_PHASES.slice(0, index)
        .reverse()
        .find((p) => !NOT_AVAILABLE[p]);
      if (!previous || !REVERTIBLE.has(facts.phase)) {
        return {
          allowed: false,
          reason:
            facts.phase === "define_key"
              ? "The plan is at its first phase: there is nothing to revert to."
              : `"${title}" cannot be reverted: clean-up has already dropped replication. Create a new plan instead.`,
        };
      }
      return { allowed: true, to: { phase: previous, status: "active" } };
    }
    case "archive": {
      if (!ARCHIVABLE.has(facts.phase)) {
        return {
          allowed: false,
          reason:
            `A plan in "${title}" has replication and copies running against the databases. ` +
            "Revert it to “Application router” first (which stops them), or finish clean-up, then archive.",
        };
      }
      return { allowed: true, to: { phase: facts.phase, status: "archived" } };
    }
  }
}

/** Every event with its outcome: the UI shows allowed ones enabled and the others with the reason. */
export function availableTransitions(facts: PlanFacts): Record<PlanEvent, TransitionOutcome> {
  return {
    advance: decideTransition(facts, "advance"),
    revert: decideTransition(facts, "revert"),
    archive: decideTransition(facts, "archive"),
  };
}
