// The plan lifecycle: an explicit state machine over the eight DATA-BALANCE steps.
//
// States: the phases in PLAN_PHASES order, plus the orthogonal status active | archived.
// Events and their rules (the only transitions there are):
//   advance  phase i → i+1           guarded: see ADVANCE_GUARDS; never from `complete`
//   revert   phase i → i-1           from application_router … live_rollback; clean-up has
//                                    already dropped replication, so it cannot be undone
//   archive  active → archived       only while nothing runs against the databases
//                                    (define_key, application_router, complete): archiving
//                                    mid-migration would orphan replication slots
// An archived plan refuses every event: history is kept, nothing restarts from it.
//
// Pure: callers pass the facts (phase, status, when the current phase began, settings); the
// store persists the outcome. Later engine steps add their own guards here, in one place.
import { PHASE_INFO, PLAN_PHASES, type PlanPhase, type TPlanSettings } from "../../schemas/plan";

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

const DAY_MS = 86_400_000;

/** Extra conditions for leaving a phase forwards; undefined means "no condition yet". */
const ADVANCE_GUARDS: Partial<Record<PlanPhase, (facts: PlanFacts) => string | null>> = {
  live_rollback: (facts) => {
    const soakEnds = facts.phaseEnteredAt.getTime() + facts.settings.soakDays * DAY_MS;
    if (facts.now.getTime() >= soakEnds) return null;
    const daysLeft = Math.ceil((soakEnds - facts.now.getTime()) / DAY_MS);
    return (
      `The soak is not over: clean-up starts ${facts.settings.soakDays} days after the breaker was armed ` +
      `(${daysLeft} day${daysLeft === 1 ? "" : "s"} left). Shorten soakDays in settings (at least 7) if that is intended.`
    );
  },
};

export function phaseIndex(phase: PlanPhase): number {
  return PLAN_PHASES.indexOf(phase);
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
      const blocked = ADVANCE_GUARDS[facts.phase]?.(facts);
      if (blocked) return { allowed: false, reason: blocked };
      return { allowed: true, to: { phase: next, status: "active" } };
    }
    case "revert": {
      const previous = PLAN_PHASES[index - 1];
      if (facts.phase === "two_way_cdc" && facts.replicationActive) {
        return {
          allowed: false,
          reason:
            "The data movement still holds a replication slot on legacy. Cancel it first (Backfill & CDC), which drops the slot, then revert.",
        };
      }
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
