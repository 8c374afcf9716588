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
//                             cannot be undone; Two-way CDC is kept while a slot is held
//   archive  active → archived  only while nothing runs against the databases
//                             (define_key, application_router, complete): archiving
//                             mid-migration would orphan replication slots
// An archived plan refuses every event: history is kept, nothing restarts from it.
//
// Pure: callers pass the facts (phase, status, when the current phase began, settings, engine
// facts); the store persists the outcome. Later engine steps add their guards here, in one place,
// and take their phase off NOT_AVAILABLE.
import { PHASE_INFO, PLAN_PHASES, type PlanPhase, type TPlanSettings } from "../../schemas/plan";
import { backfillDone, cdcStreaming, type EngineFacts, NO_ENGINE_FACTS, parityStanding } from "./plan-facts";

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
  bit_by_bit_routing:
    "the plan does not follow its tenants into this phase yet (cohorts are promoted from the Cohorts page, single tenants cut over from the Routing page meanwhile)",
  live_rollback:
    "the plan does not follow its tenants into this phase yet (the breaker already works: its state is in the header, and a trip rolls tenants back)",
  native_cleanup: "clean-up is not built yet",
};

export function notAvailableReason(phase: PlanPhase): string | null {
  const why = NOT_AVAILABLE[phase];
  return why ? `“${PHASE_INFO[phase].title}” is not available yet: ${why}.` : null;
}

const DAY_MS = 86_400_000;

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
  async_backfill: (_, engine) => {
    if (backfillDone(engine)) return null;
    const { tables, tablesDone } = engine.backfill;
    return tables === 0
      ? "Nothing has been copied: start the data movement (Backfill & CDC) first."
      : `The backfill is not done: ${tablesDone} of ${tables} tables are copied. Advance once every table is.`;
  },
  automated_parity: (facts, engine) => {
    const standing = parityStanding(engine, facts.now);
    return standing.holds
      ? null
      : `Parity does not hold: ${standing.why}. Advance once a full check passes with every row verified.`;
  },
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
