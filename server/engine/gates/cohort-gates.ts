// The gates a cohort must pass before it is promoted (issue 14): each a small pure function of the
// measured facts and the plan's settings, returning a Judgement. The promotion runner (next round)
// evaluates them continuously and on demand; a cohort moves only when every gate passes.
//
//   forward-lag    legacy → shards lag stayed under the threshold over the gate window
//   reverse-lag    shards → legacy lag likewise (passes while no tenant is on a shard: nothing flows back)
//   parity         no open difference and nothing unverified for the cohort's tenants, checked recently
//   soak           the previous cohort is wholly on its shards, and has been for the soak time
//   breaker        no breaker trip in the window, and no trip rule failing now
//   stray-writes   the fences refused no write in the window (an application not routing through the SDK)
import type { TPlanSettings } from "../../schemas/plan";
import { LAG_FRESH_MS, PARITY_FRESH_MS } from "../state/plan-facts";
import type { CohortFacts, MeasuredFacts } from "./facts";
import { clock, coverageProblem, type Judgement, type Sample, windowSamples } from "./judgement";

type GateSettings = Pick<
  TPlanSettings,
  "cdcLagThresholdMs" | "gateSoakMinutes" | "requireCleanParity" | "gateWindowMinutes"
>;

function gateWindow(facts: MeasuredFacts, settings: GateSettings) {
  return { from: new Date(facts.now.getTime() - settings.gateWindowMinutes * 60_000), to: facts.now };
}

function lagUnder(
  id: "forward-lag" | "reverse-lag",
  samples: readonly Sample[],
  facts: MeasuredFacts,
  settings: GateSettings,
): Judgement {
  const { from, to } = gateWindow(facts, settings);
  const forward = id === "forward-lag";
  const base = {
    id,
    title: forward ? "Forward lag (legacy → shards)" : "Reverse lag (shards → legacy)",
    threshold: settings.cdcLagThresholdMs,
    unit: "ms",
    evidence: { chart: forward ? ("cdc-lag" as const) : ("reverse-lag" as const), from, to },
  };
  if (!forward && facts.onShard.size === 0) {
    return {
      ...base,
      verdict: "pass",
      value: null,
      reason: "No tenant is on a shard yet: nothing flows back to legacy.",
    };
  }
  const what = forward ? "forward lag" : "reverse lag";
  const problem = coverageProblem(what, samples, from, to, LAG_FRESH_MS);
  if (problem) return { ...base, verdict: "inconclusive", value: null, reason: problem };
  const judged = windowSamples(samples, from, to);
  const worst = judged.reduce((m, s) => (s.value > m.value ? s : m));
  if (worst.value > settings.cdcLagThresholdMs) {
    return {
      ...base,
      verdict: "fail",
      value: worst.value,
      reason: `The ${what} reached ${Math.round(worst.value)} ms at ${clock(worst.at)}, over the ${settings.cdcLagThresholdMs} ms threshold, within the last ${settings.gateWindowMinutes} min.`,
    };
  }
  return {
    ...base,
    verdict: "pass",
    value: worst.value,
    reason: `The ${what} stayed at or under ${Math.round(worst.value)} ms for the last ${settings.gateWindowMinutes} min.`,
  };
}

export function forwardLagGate(facts: MeasuredFacts, settings: GateSettings): Judgement {
  return lagUnder("forward-lag", facts.forwardLag, facts, settings);
}

export function reverseLagGate(facts: MeasuredFacts, settings: GateSettings): Judgement {
  return lagUnder("reverse-lag", facts.reverseLag, facts, settings);
}

export function parityGate(facts: MeasuredFacts, cohort: CohortFacts, settings: GateSettings): Judgement {
  const full = facts.parity.lastFullAt;
  const base = {
    id: "parity",
    title: `Parity of cohort ${cohort.ordinal}'s tenants`,
    threshold: 0,
    unit: "rows",
    evidence: {
      chart: "parity" as const,
      from: full && full < facts.now ? full : new Date(facts.now.getTime() - PARITY_FRESH_MS),
      to: facts.now,
    },
  };
  const differing = cohort.tenants.reduce((n, t) => n + (facts.parity.openByTenant.get(t) ?? 0), 0);
  if (!settings.requireCleanParity) {
    return {
      ...base,
      verdict: "pass",
      value: differing,
      reason: `Not required by the plan's settings (${differing} differing row${differing === 1 ? "" : "s"} open for the cohort's tenants).`,
    };
  }
  if (differing > 0) {
    const tenants = cohort.tenants.filter((t) => facts.parity.openByTenant.has(t));
    return {
      ...base,
      verdict: "fail",
      value: differing,
      reason: `${differing} row${differing === 1 ? "" : "s"} of ${tenants.length} of the cohort's tenants differ from legacy (e.g. ${tenants.slice(0, 3).join(", ")}): repair them, or wait for the re-check.`,
    };
  }
  if (!full) {
    return {
      ...base,
      verdict: "inconclusive",
      value: null,
      reason: "No full parity check has completed yet.",
    };
  }
  if (facts.now.getTime() - full.getTime() > PARITY_FRESH_MS) {
    return {
      ...base,
      verdict: "inconclusive",
      value: null,
      reason: `The last full parity check finished at ${clock(full)}, more than ${PARITY_FRESH_MS / 60_000} min ago: wait for the next one.`,
    };
  }
  const unverified = cohort.tenants.filter((t) => facts.parity.unverifiedTenants.has(t));
  if (unverified.length > 0) {
    return {
      ...base,
      verdict: "inconclusive",
      value: null,
      reason: `The last full check could not verify ${unverified.length} of the cohort's tenants (e.g. ${unverified.slice(0, 3).join(", ")}): see why on the parity page.`,
    };
  }
  return {
    ...base,
    verdict: "pass",
    value: 0,
    reason: `All ${cohort.tenants.length} of the cohort's tenants matched legacy in the full check of ${clock(full)}.`,
  };
}

export function soakGate(facts: MeasuredFacts, cohort: CohortFacts, settings: GateSettings): Judgement {
  const threshold = settings.gateSoakMinutes;
  const prev = cohort.previous;
  const from = prev?.lastFlipAt ?? new Date(facts.now.getTime() - threshold * 60_000);
  const base = {
    id: "soak",
    title: prev ? `Cohort ${prev.ordinal} soaked` : "Previous cohort soaked",
    threshold,
    unit: "min",
    evidence: { chart: "cohorts" as const, from, to: facts.now },
  };
  if (!prev) {
    return {
      ...base,
      verdict: "pass",
      value: null,
      reason: "The first cohort has no previous cohort to soak.",
    };
  }
  if (prev.onShard < prev.tenants) {
    return {
      ...base,
      verdict: "fail",
      value: null,
      reason: `${prev.tenants - prev.onShard} of cohort ${prev.ordinal}'s ${prev.tenants} tenants are not on their shard: promote (or roll back) the previous cohort completely first.`,
    };
  }
  if (!prev.lastFlipAt) {
    // Every tenant is on a shard yet no flip time is known: the routing map lost its history.
    return {
      ...base,
      verdict: "inconclusive",
      value: null,
      reason: `When cohort ${prev.ordinal} was promoted is not recorded.`,
    };
  }
  const soaked = (facts.now.getTime() - prev.lastFlipAt.getTime()) / 60_000;
  const value = Math.floor(soaked * 10) / 10;
  return soaked >= threshold
    ? {
        ...base,
        verdict: "pass",
        value,
        reason: `Cohort ${prev.ordinal} has run on its shards for ${value} min (since ${clock(prev.lastFlipAt)}).`,
      }
    : {
        ...base,
        verdict: "fail",
        value,
        reason: `Cohort ${prev.ordinal} has run on its shards for ${value} of ${threshold} min: ${Math.ceil(threshold - soaked)} min to go.`,
      };
}

/** No trip recorded in the window and no trip rule failing now (the rules' own judgements). */
export function breakerGate(
  facts: MeasuredFacts,
  settings: GateSettings,
  tripRules: readonly Judgement[],
): Judgement {
  const { from, to } = gateWindow(facts, settings);
  const trips = facts.trips.filter((t) => t.at >= from && t.at <= to);
  const failing = tripRules.filter((r) => r.verdict === "fail");
  const base = {
    id: "breaker",
    title: "No breaker trip",
    threshold: 0,
    unit: "trips",
    evidence: { chart: "cohorts" as const, from, to },
  };
  if (trips.length > 0) {
    const last = trips.at(-1);
    return {
      ...base,
      verdict: "fail",
      value: trips.length,
      reason: `The breaker tripped ${trips.length} time${trips.length === 1 ? "" : "s"} in the last ${settings.gateWindowMinutes} min (last at ${last ? clock(last.at) : "?"}: ${last?.message ?? ""}).`,
    };
  }
  if (failing.length > 0) {
    return {
      ...base,
      verdict: "fail",
      value: failing.length,
      reason: `A trip rule fails now: ${failing.map((r) => r.reason).join(" ")}`,
    };
  }
  return {
    ...base,
    verdict: "pass",
    value: 0,
    reason: `No trip in the last ${settings.gateWindowMinutes} min, and no trip rule fails now.`,
  };
}

export function strayWritesGate(
  facts: MeasuredFacts,
  cohort: CohortFacts,
  settings: GateSettings,
): Judgement {
  const window = gateWindow(facts, settings);
  // Since the promotion began if that is later: writes refused before it were judged already.
  const from =
    cohort.promotionStartedAt && cohort.promotionStartedAt > window.from
      ? cohort.promotionStartedAt
      : window.from;
  const base = {
    id: "stray-writes",
    title: "No stray writes",
    threshold: 0,
    unit: "writes",
    evidence: { chart: "stray-writes" as const, from, to: window.to },
  };
  if (!facts.fencesInstalledAt) {
    return {
      ...base,
      verdict: "inconclusive",
      value: null,
      reason:
        "The fences are not installed, so writes that bypass the router cannot be seen: install them on the routing page.",
    };
  }
  const down = facts.shards.filter((s) => s.reachable === false);
  const strays = facts.strayWrites.filter((w) => w.at >= from && w.at <= window.to);
  const count = strays.reduce((n, w) => n + w.count, 0);
  if (count > 0) {
    const where = [...new Set(strays.map((w) => w.database))].join(", ");
    return {
      ...base,
      verdict: "fail",
      value: count,
      reason: `The fences refused ${count} write${count === 1 ? "" : "s"} since ${clock(from)} (on ${where}): an application writes without the router SDK, or with a stale map.`,
    };
  }
  if (down.length > 0) {
    // A shard that does not answer cannot report the writes its fence refused.
    return {
      ...base,
      verdict: "inconclusive",
      value: null,
      reason: `${down.map((s) => s.name).join(", ")} did not answer its last probe: its refused writes cannot be read.`,
    };
  }
  return {
    ...base,
    verdict: "pass",
    value: 0,
    reason: `No write was refused by a fence since ${clock(from)}.`,
  };
}

/** Every gate of a cohort, in the order the page shows them. */
export function cohortGates(
  facts: MeasuredFacts,
  cohort: CohortFacts,
  settings: GateSettings,
  tripRules: readonly Judgement[],
): Judgement[] {
  return [
    forwardLagGate(facts, settings),
    reverseLagGate(facts, settings),
    parityGate(facts, cohort, settings),
    soakGate(facts, cohort, settings),
    breakerGate(facts, settings, tripRules),
    strayWritesGate(facts, cohort, settings),
  ];
}

/** A cohort may be promoted only when every gate passes; otherwise the first that does not says why. */
export function gatesOpen(
  gates: readonly Judgement[],
): { open: true } | { open: false; blockedBy: Judgement } {
  const blocking = gates.find((g) => g.verdict !== "pass");
  return blocking ? { open: false, blockedBy: blocking } : { open: true };
}
