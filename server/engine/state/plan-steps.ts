// The DATA-BALANCE timeline as step states, each judged from the engine's facts with its evidence.
//
// Why step states rather than one pointer: the method's steps overlap in practice — CDC and the
// backfill run together, parity and (later) the breaker stay on through the whole rollout — so a
// single "current phase" either hides what runs or marks as done what never ran. Each step here
// says whether it has not started, is running, is done or is not available yet, and why (its
// evidence); a result that no longer holds (a clean parity check from before CDC stopped, an old lag
// reading) is marked stale instead of staying green. The persisted phase (./plan-phase.ts) is still
// there: it is how far the operator has taken the rollout, and it only moves when the facts allow.
import { PLAN_PHASES, type PlanPhase } from "../../schemas/plan";
import {
  backfillDone,
  breakerSoakSince,
  type EngineFacts,
  everyTenantOnShards,
  lagIsFresh,
  NO_ENGINE_FACTS,
  parityStanding,
} from "./plan-facts";
import { NOT_AVAILABLE, type PlanFacts, phaseIndex } from "./plan-phase";

export type StepState = "not_started" | "running" | "paused" | "done" | "stopped" | "not_available";

export interface StepView {
  phase: PlanPhase;
  state: StepState;
  /** What the state rests on, in words: the engine's own figures. */
  evidence: string;
  /** The evidence no longer describes now (an old lag reading, a clean check from before CDC stopped). */
  stale: boolean;
  /** The step needs attention (drift, an error). */
  alert: boolean;
}

const nf = new Intl.NumberFormat("en");

function ago(from: Date, now: Date): string {
  const s = Math.max(0, Math.round((now.getTime() - from.getTime()) / 1000));
  if (s < 90) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 90) return `${m} min ago`;
  const h = Math.round(m / 60);
  return h < 48 ? `${h} h ago` : `${Math.round(h / 24)} days ago`;
}

function step(phase: PlanPhase, state: StepState, evidence: string, extra: Partial<StepView> = {}): StepView {
  return { phase, state, evidence, stale: false, alert: false, ...extra };
}

function cdcStep(engine: EngineFacts, now: Date): StepView {
  const m = engine.movement;
  if (!m || m.status === "cancelled") {
    return step(
      "two_way_cdc",
      "not_started",
      m ? "Cancelled: the slot was dropped." : "No replication slot yet.",
    );
  }
  if (m.status === "failed") {
    return step("two_way_cdc", "stopped", `Stopped with an error: ${m.lastError ?? "see Backfill & CDC"}`, {
      alert: true,
    });
  }
  if (m.status === "cancelling") return step("two_way_cdc", "stopped", "Cancelling: dropping the slot.");
  if (m.status === "preparing") return step("two_way_cdc", "running", "Preparing the shards and the slot.");
  const confirmed = m.confirmedLsn ? ` Confirmed up to ${m.confirmedLsn}.` : " No change confirmed yet.";
  if (!engine.lag) return step("two_way_cdc", "running", `Streaming; no lag measured yet.${confirmed}`);
  const fresh = lagIsFresh(engine, now);
  return step(
    "two_way_cdc",
    "running",
    `Streaming; lag ${nf.format(Math.round(engine.lag.ms))} ms, measured ${ago(engine.lag.at, now)}${fresh ? "" : " (stale)"}.${confirmed}`,
    { stale: !fresh },
  );
}

function backfillStep(engine: EngineFacts): StepView {
  const { tables, tablesDone, rowsCopied } = engine.backfill;
  const rows = `${nf.format(rowsCopied)} rows`;
  if (tables === 0) return step("async_backfill", "not_started", "Nothing copied yet.");
  if (backfillDone(engine)) return step("async_backfill", "done", `All ${tables} tables copied (${rows}).`);
  const m = engine.movement?.status;
  const copied = `${tablesDone} of ${tables} tables copied (${rows}).`;
  if (m === "paused") return step("async_backfill", "paused", `Paused: ${copied}`);
  if (m === "running" || m === "preparing") return step("async_backfill", "running", copied);
  return step("async_backfill", "stopped", `Stopped (${m ?? "no movement"}): ${copied}`, {
    alert: m === "failed",
  });
}

function parityStep(engine: EngineFacts, now: Date): StepView {
  const full = engine.parity.lastFull;
  const standing = parityStanding(engine, now);
  if (standing.holds && full) {
    return step(
      "automated_parity",
      "done",
      `Clean: full check ${ago(full.finishedAt, now)} verified ${nf.format(full.rowsVerified)} rows, no difference.`,
    );
  }
  if (engine.parity.openMismatches > 0) {
    const n = engine.parity.openMismatches;
    return step(
      "automated_parity",
      "running",
      `Drift: ${nf.format(n)} row${n === 1 ? "" : "s"} differ from legacy. See Parity.`,
      {
        alert: true,
      },
    );
  }
  if (!standing.holds && standing.stale && full) {
    return step(
      "automated_parity",
      "done",
      `Stale: clean full check ${ago(full.finishedAt, now)} (${nf.format(full.rowsVerified)} rows), but ${standing.why}.`,
      { stale: true },
    );
  }
  if (engine.parity.checking) return step("automated_parity", "running", "A check is running.");
  if (!backfillDone(engine))
    return step("automated_parity", "not_started", "Starts once the backfill is done.");
  return step(
    "automated_parity",
    "running",
    `Waiting for a full check: ${standing.holds ? "it holds" : standing.why}.`,
  );
}

/** Bit-by-bit routing from the routing map's owners and the ladder: how many tenants are on shards. */
function routingStep(engine: EngineFacts): StepView {
  const total = engine.tenantsTotal ?? 0;
  const on = engine.tenantsOnShards ?? 0;
  const cohorts = engine.cohorts;
  const ladder = cohorts
    ? `; cohort ${cohorts.promoted} of ${cohorts.drawn} wholly on shards`
    : "; no ladder drawn";
  const moving = engine.tenantsCuttingOver ?? 0;
  const inFlight = moving > 0 ? `; ${nf.format(moving)} cutting over` : "";
  if (everyTenantOnShards(engine) && moving === 0) {
    return step(
      "bit_by_bit_routing",
      "done",
      `All ${nf.format(total)} tenants are on their shards${ladder}.`,
    );
  }
  if (on === 0 && moving === 0) {
    return step(
      "bit_by_bit_routing",
      "not_started",
      cohorts
        ? `No tenant is on a shard yet; the ladder has ${cohorts.drawn} cohorts: promote cohort 1 on Cohorts.`
        : "No tenant is on a shard yet: draw the cohort ladder on Cohorts.",
    );
  }
  const of = total > 0 ? ` of ${nf.format(total)}` : "";
  return step(
    "bit_by_bit_routing",
    "running",
    `${nf.format(on)}${of} tenants on shards${ladder}${inFlight}.`,
  );
}

/** The live rollback breaker's soak: armed with every tenant on the shards, for soakDays. */
function rollbackStep(engine: EngineFacts, facts: PlanFacts): StepView {
  const since = breakerSoakSince(engine);
  const status = engine.breaker?.status;
  if (since) {
    const days = (facts.now.getTime() - since.getTime()) / 86_400_000;
    const of = `${Math.floor(days)} of ${facts.settings.soakDays} days`;
    return days >= facts.settings.soakDays
      ? step(
          "live_rollback",
          "done",
          `Soaked: the breaker armed with every tenant on the shards for ${of} (since ${ago(since, facts.now)}).`,
        )
      : step(
          "live_rollback",
          "running",
          `Soaking: the breaker armed with every tenant on the shards since ${ago(since, facts.now)} (${of}).`,
        );
  }
  if (status && status !== "armed") {
    return step(
      "live_rollback",
      "stopped",
      `The breaker is ${status.replace("_", " ")}: the soak counts only while it is armed.`,
      {
        alert: true,
      },
    );
  }
  const total = engine.tenantsTotal ?? 0;
  return step(
    "live_rollback",
    "not_started",
    `Starts when every tenant is on a shard with the breaker armed (${nf.format(engine.tenantsOnShards ?? 0)}${total > 0 ? ` of ${nf.format(total)}` : ""} are now).`,
  );
}

/** Every DATA-BALANCE step (not `complete`) with its state and evidence. */
export function describeSteps(facts: PlanFacts & { shardKeyColumn: string }): StepView[] {
  const engine = facts.engine ?? NO_ENGINE_FACTS;
  const at = phaseIndex(facts.phase);
  return PLAN_PHASES.filter((p) => p !== "complete").map((phase) => {
    const unavailable = NOT_AVAILABLE[phase];
    if (unavailable) return step(phase, "not_available", `Not available yet: ${unavailable}.`);
    switch (phase) {
      case "define_key":
        return step(phase, "done", `Key ${facts.shardKeyColumn}, found on legacy when the plan was created.`);
      case "application_router":
        if ((engine.tenantsOnShards ?? 0) > 0) {
          const n = engine.tenantsOnShards ?? 0;
          return step(
            phase,
            "done",
            `${nf.format(n)} ${n === 1 ? "tenant is" : "tenants are"} routed to a shard (cut over on the routing page), every other tenant to legacy.`,
          );
        }
        return at >= phaseIndex(phase)
          ? step(phase, "done", "Every tenant is routed to legacy: none has moved.")
          : step(phase, "not_started", "Every tenant is routed to legacy.");
      case "two_way_cdc":
        return cdcStep(engine, facts.now);
      case "async_backfill":
        return backfillStep(engine);
      case "automated_parity":
        return parityStep(engine, facts.now);
      case "bit_by_bit_routing":
        return routingStep(engine);
      case "live_rollback":
        return rollbackStep(engine, facts);
      default:
        return step(phase, "not_started", "");
    }
  });
}
