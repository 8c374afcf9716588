// The cohort gates and the breaker's trip rules on demand: the measured facts read from the store,
// judged by the pure functions in engine/gates, each with a link to its evidence. The engine's
// promotion runner and breaker (next round) call the same functions continuously.

import { db } from "../../db";
import { cohortGates, gatesOpen } from "../../engine/gates/cohort-gates";
import { evidenceHref, type Judgement } from "../../engine/gates/judgement";
import { loadCohortFacts, loadMeasuredFacts } from "../../engine/gates/load-facts";
import { tripRules } from "../../engine/gates/trip-rules";
import { AppError } from "../../errors";
import { DEFAULT_PLAN_SETTINGS, type TPlanSettings, ZPlanSettings } from "../../schemas/plan";

export async function settingsOf(planId: string): Promise<TPlanSettings> {
  const plan = await db().plan.findUnique({ where: { id: planId }, select: { settings: true } });
  if (!plan) throw new AppError("NOT_FOUND", "No such plan: it may have been removed, or the link is wrong.");
  return ZPlanSettings.parse({ ...DEFAULT_PLAN_SETTINGS, ...(plan.settings as object) });
}

const withHref = (planId: string) => (j: Judgement) => ({ ...j, href: evidenceHref(planId, j.evidence) });

export async function evaluateTripRules(planId: string, now = new Date()) {
  const settings = await settingsOf(planId);
  const facts = await loadMeasuredFacts(planId, settings, now);
  const rules = tripRules(facts, settings);
  return {
    at: now,
    rules: rules.map(withHref(planId)),
    tripping: rules.filter((r) => r.verdict === "fail").map((r) => r.id),
  };
}

export async function evaluateCohortGates(
  planId: string,
  ordinal: number,
  now = new Date(),
  /** A running promotion's start: stray writes are judged since (writes refused before were judged already). */
  promotionStartedAt: Date | null = null,
) {
  const settings = await settingsOf(planId);
  const loaded = await loadCohortFacts(planId, ordinal);
  const cohort = loaded ? { ...loaded, promotionStartedAt } : null;
  if (!cohort) {
    throw new AppError(
      "NOT_FOUND",
      `The plan's ladder has no cohort ${ordinal}: draw the ladder first, or pick one of its cohorts.`,
    );
  }
  const facts = await loadMeasuredFacts(planId, settings, now);
  const rules = tripRules(facts, settings);
  const gates = cohortGates(facts, cohort, settings, rules);
  const open = gatesOpen(gates);
  return {
    at: now,
    ordinal,
    tenants: cohort.tenants.length,
    open: open.open,
    blockedBy: open.open ? null : open.blockedBy.id,
    gates: gates.map(withHref(planId)),
  };
}
