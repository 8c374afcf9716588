// The breaker's automatic trip rules (issue 13): the same shape as the cohort gates, each a pure
// function of the measured facts and the plan's settings. Here "fail" means TRIP: the rule's
// condition holds and the breaker (next round) moves the affected tenants back to legacy.
// "inconclusive" never trips — the breaker shows it as a warning that it cannot see.
//
//   parity-drift     confirmed differing rows open for tenants on shards, above the threshold
//   forward-lag      legacy → shards lag above the threshold for the whole window
//   reverse-lag      shards → legacy lag likewise (a rollback waits on it)
//   shard-down       a shard has not answered its probes for longer than the limit
//   stray-writes     the fences refused more writes than the threshold within the window
//   sdk-error-rate   a shard's share of failed queries through the router SDK above the threshold
import type { TPlanSettings } from "../../schemas/plan";
import { LAG_FRESH_MS } from "../state/plan-facts";
import type { MeasuredFacts } from "./facts";
import { clock, coverageProblem, type Judgement, type Sample, seconds, windowSamples } from "./judgement";

type TripSettings = Pick<
  TPlanSettings,
  | "breakerParityDriftRows"
  | "breakerLagThresholdMs"
  | "breakerWindowSeconds"
  | "breakerShardDownSeconds"
  | "breakerStrayWrites"
  | "breakerSdkErrorPercent"
>;

/** A recent parity pass ("recent" runs every 30 s, full every 10 min): older than this is stale. */
export const PARITY_PASS_FRESH_MS = 5 * 60_000;
/** Shards are probed every few seconds: a probe older than this says nothing about now. */
export const PROBE_FRESH_MS = 30_000;

function tripWindow(facts: MeasuredFacts, settings: TripSettings) {
  return { from: new Date(facts.now.getTime() - settings.breakerWindowSeconds * 1000), to: facts.now };
}

export function parityDriftRule(facts: MeasuredFacts, settings: TripSettings): Judgement {
  const last = facts.parity.lastCheckAt;
  const base = {
    id: "parity-drift",
    title: "Parity drift on shards",
    threshold: settings.breakerParityDriftRows,
    unit: "rows",
    evidence: {
      chart: "parity" as const,
      from: new Date(facts.now.getTime() - PARITY_PASS_FRESH_MS),
      to: facts.now,
    },
  };
  if (facts.onShard.size === 0) {
    return { ...base, verdict: "pass", value: 0, reason: "No tenant is on a shard: nothing to roll back." };
  }
  let rows = 0;
  const tenants: string[] = [];
  for (const [tenant, n] of facts.parity.openByTenant) {
    if (!facts.onShard.has(tenant)) continue;
    rows += n;
    tenants.push(tenant);
  }
  if (rows > settings.breakerParityDriftRows) {
    return {
      ...base,
      verdict: "fail",
      value: rows,
      reason: `${rows} confirmed differing row${rows === 1 ? "" : "s"} of ${tenants.length} tenant${tenants.length === 1 ? "" : "s"} on shards (e.g. ${tenants.slice(0, 3).join(", ")}), over the limit of ${settings.breakerParityDriftRows}.`,
    };
  }
  if (!last || facts.now.getTime() - last.getTime() > PARITY_PASS_FRESH_MS) {
    return {
      ...base,
      verdict: "inconclusive",
      value: rows,
      reason: last
        ? `The last parity pass finished at ${clock(last)}, more than ${PARITY_PASS_FRESH_MS / 60_000} min ago: drift since then is not seen.`
        : "No parity pass has completed: drift cannot be seen.",
    };
  }
  return {
    ...base,
    verdict: "pass",
    value: rows,
    reason: `${rows} differing row${rows === 1 ? "" : "s"} open for tenants on shards (limit ${settings.breakerParityDriftRows}), checked at ${clock(last)}.`,
  };
}

function lagAboveFor(
  id: "forward-lag" | "reverse-lag",
  samples: readonly Sample[],
  facts: MeasuredFacts,
  settings: TripSettings,
): Judgement {
  const { from, to } = tripWindow(facts, settings);
  const forward = id === "forward-lag";
  const what = forward ? "forward lag" : "reverse lag";
  const base = {
    id,
    title: forward ? "Forward lag too high" : "Reverse lag too high",
    threshold: settings.breakerLagThresholdMs,
    unit: "ms",
    evidence: { chart: forward ? ("cdc-lag" as const) : ("reverse-lag" as const), from, to },
  };
  // Forward CDC carries legacy's writes of tenants not yet moved; with no tenant on a shard a
  // rollback has nothing to do, and reverse CDC has nothing to carry.
  if (facts.onShard.size === 0) {
    return {
      ...base,
      verdict: "pass",
      value: null,
      reason: "No tenant is on a shard: nothing to roll back.",
    };
  }
  const problem = coverageProblem(what, samples, from, to, LAG_FRESH_MS);
  if (problem) return { ...base, verdict: "inconclusive", value: null, reason: problem };
  // Above the threshold for the WHOLE window ⇔ its lowest sample is above it.
  const lowest = windowSamples(samples, from, to).reduce((m, s) => (s.value < m.value ? s : m));
  if (lowest.value > settings.breakerLagThresholdMs) {
    return {
      ...base,
      verdict: "fail",
      value: lowest.value,
      reason: `The ${what} stayed above ${settings.breakerLagThresholdMs} ms for the last ${settings.breakerWindowSeconds} s (never below ${Math.round(lowest.value)} ms).`,
    };
  }
  return {
    ...base,
    verdict: "pass",
    value: lowest.value,
    reason: `The ${what} was ${Math.round(lowest.value)} ms at ${clock(lowest.at)}, under ${settings.breakerLagThresholdMs} ms, within the last ${settings.breakerWindowSeconds} s.`,
  };
}

export function forwardLagRule(facts: MeasuredFacts, settings: TripSettings): Judgement {
  return lagAboveFor("forward-lag", facts.forwardLag, facts, settings);
}

export function reverseLagRule(facts: MeasuredFacts, settings: TripSettings): Judgement {
  return lagAboveFor("reverse-lag", facts.reverseLag, facts, settings);
}

export function shardDownRule(facts: MeasuredFacts, settings: TripSettings): Judgement {
  const limitMs = settings.breakerShardDownSeconds * 1000;
  const base = {
    id: "shard-down",
    title: "A shard unreachable",
    threshold: settings.breakerShardDownSeconds,
    unit: "s",
    evidence: {
      chart: "shards" as const,
      from: new Date(facts.now.getTime() - Math.max(limitMs, PROBE_FRESH_MS) * 2),
      to: facts.now,
    },
  };
  let worst: { name: string; downMs: number; since: Date | null } | null = null;
  const unprobed: string[] = [];
  const downTooLong: number[] = [];
  for (const shard of facts.shards) {
    if (!shard.lastProbeAt || facts.now.getTime() - shard.lastProbeAt.getTime() > PROBE_FRESH_MS) {
      unprobed.push(shard.name);
      continue;
    }
    if (shard.reachable) continue;
    // Down since the first probe it failed after its last answer (a gap in the probes is not an
    // outage); never answered: since the probes began, at least as long as we know.
    const since = shard.downSince ?? shard.lastReachableAt;
    const downMs = since ? facts.now.getTime() - since.getTime() : Number.POSITIVE_INFINITY;
    if (!worst || downMs > worst.downMs) worst = { name: shard.name, downMs, since };
    if (downMs > limitMs) downTooLong.push(shard.ordinal);
  }
  if (worst && worst.downMs > limitMs) {
    return {
      ...base,
      verdict: "fail",
      shards: downTooLong,
      value: Number.isFinite(worst.downMs) ? Math.round(worst.downMs / 1000) : null,
      reason: worst.since
        ? `${worst.name} has not answered since ${clock(worst.since)} (${seconds(worst.downMs)}), longer than ${settings.breakerShardDownSeconds} s.`
        : `${worst.name} has never answered a probe.`,
    };
  }
  if (unprobed.length > 0) {
    return {
      ...base,
      verdict: "inconclusive",
      value: null,
      reason: `${unprobed.join(", ")} ${unprobed.length === 1 ? "was" : "were"} not probed in the last ${PROBE_FRESH_MS / 1000} s: is the worker running?`,
    };
  }
  return {
    ...base,
    verdict: "pass",
    value: worst ? Math.round(worst.downMs / 1000) : 0,
    reason: worst
      ? `${worst.name} has not answered for ${seconds(worst.downMs)}, under the ${settings.breakerShardDownSeconds} s limit.`
      : `Every shard answered its last probe.`,
  };
}

export function strayWritesRule(facts: MeasuredFacts, settings: TripSettings): Judgement {
  const { from, to } = tripWindow(facts, settings);
  const base = {
    id: "stray-writes",
    title: "Stray writes",
    threshold: settings.breakerStrayWrites,
    unit: "writes",
    evidence: { chart: "stray-writes" as const, from, to },
  };
  if (!facts.fencesInstalledAt) {
    return {
      ...base,
      verdict: "inconclusive",
      value: null,
      reason: "The fences are not installed: stray writes cannot be seen.",
    };
  }
  const count = facts.strayWrites.filter((w) => w.at >= from && w.at <= to).reduce((n, w) => n + w.count, 0);
  return count > settings.breakerStrayWrites
    ? {
        ...base,
        verdict: "fail",
        value: count,
        reason: `The fences refused ${count} write${count === 1 ? "" : "s"} in the last ${settings.breakerWindowSeconds} s, over the limit of ${settings.breakerStrayWrites}.`,
      }
    : {
        ...base,
        verdict: "pass",
        value: count,
        reason: `${count} stray write${count === 1 ? "" : "s"} in the last ${settings.breakerWindowSeconds} s (limit ${settings.breakerStrayWrites}).`,
      };
}

export function sdkErrorRateRule(facts: MeasuredFacts, settings: TripSettings): Judgement {
  const { from, to } = tripWindow(facts, settings);
  const base = {
    id: "sdk-error-rate",
    title: "SDK error rate per shard",
    threshold: settings.breakerSdkErrorPercent,
    unit: "%",
    evidence: { chart: "sdk-errors" as const, from, to },
  };
  if (facts.onShard.size === 0) {
    return {
      ...base,
      verdict: "pass",
      value: null,
      reason: "No tenant is on a shard: the SDK sends no query to one.",
    };
  }
  const staleMs = settings.breakerWindowSeconds * 1000;
  let worst: { name: string; percent: number; errors: number; requests: number } | null = null;
  const silent: string[] = [];
  const over: number[] = [];
  for (const shard of facts.sdk) {
    if (!shard.reportedAt || facts.now.getTime() - shard.reportedAt.getTime() > staleMs) {
      silent.push(shard.name);
      continue;
    }
    const percent = shard.requests > 0 ? (100 * shard.errors) / shard.requests : 0;
    if (!worst || percent > worst.percent)
      worst = { name: shard.name, percent, errors: shard.errors, requests: shard.requests };
    if (percent > settings.breakerSdkErrorPercent) over.push(shard.ordinal);
  }
  const rounded = (p: number) => Math.round(p * 10) / 10;
  if (worst && worst.percent > settings.breakerSdkErrorPercent) {
    return {
      ...base,
      verdict: "fail",
      shards: over,
      value: rounded(worst.percent),
      reason: `${worst.errors} of ${worst.requests} queries to ${worst.name} failed in the last ${settings.breakerWindowSeconds} s (${rounded(worst.percent)}%), over ${settings.breakerSdkErrorPercent}%.`,
    };
  }
  if (silent.length > 0 || facts.sdk.length === 0) {
    return {
      ...base,
      verdict: "inconclusive",
      value: worst ? rounded(worst.percent) : null,
      reason: `The router SDK has not reported its queries to ${silent.length ? silent.join(", ") : "any shard"} in the last ${settings.breakerWindowSeconds} s: its error rate cannot be judged.`,
    };
  }
  return {
    ...base,
    verdict: "pass",
    value: worst ? rounded(worst.percent) : 0,
    reason: worst
      ? `At most ${rounded(worst.percent)}% of a shard's queries failed (${worst.name}) in the last ${settings.breakerWindowSeconds} s.`
      : "No query failed.",
  };
}

/** Every trip rule, in the order the breaker shows them. */
export function tripRules(facts: MeasuredFacts, settings: TripSettings): Judgement[] {
  return [
    parityDriftRule(facts, settings),
    forwardLagRule(facts, settings),
    reverseLagRule(facts, settings),
    shardDownRule(facts, settings),
    strayWritesRule(facts, settings),
    sdkErrorRateRule(facts, settings),
  ];
}

/** Whether the breaker should trip, and on which rules. */
export function tripping(rules: readonly Judgement[]): Judgement[] {
  return rules.filter((r) => r.verdict === "fail");
}
