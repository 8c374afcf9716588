// The one shape every cohort gate and every breaker trip rule returns: a verdict on measured
// facts, the value it judged against its threshold, why, and the evidence — which chart, over
// which window — so an operator can check the judgement instead of trusting it.
//
// "inconclusive" means the facts were missing or stale: a gate that cannot see does not pass (it
// blocks and says why); a trip rule that cannot see does not trip (rolling tenants back on missing
// data would be an outage of its own), and the breaker shows it as a warning.

export type Verdict = "pass" | "fail" | "inconclusive";

/** Charts the evidence points at (evidenceHref turns them into the page that shows them). */
export type ChartId =
  | "cdc-lag"
  | "reverse-lag"
  | "parity"
  | "stray-writes"
  | "shards"
  | "sdk-errors"
  | "cohorts";

export interface Evidence {
  chart: ChartId;
  from: Date;
  to: Date;
}

export interface Judgement {
  /** Stable id, e.g. "forward-lag". */
  id: string;
  title: string;
  verdict: Verdict;
  /** The measured value judged (null when nothing could be measured). */
  value: number | null;
  threshold: number | null;
  unit: string;
  reason: string;
  evidence: Evidence;
  /** A per-shard rule that failed: the ordinals of the shards it failed for. */
  shards?: number[];
}

export interface Sample {
  at: Date;
  value: number;
}

const PAGE_OF: Record<ChartId, string> = {
  "cdc-lag": "backfill",
  "reverse-lag": "routing",
  parity: "parity",
  "stray-writes": "routing",
  shards: "",
  "sdk-errors": "routing",
  cohorts: "",
};

/** The plan page holding the evidence's chart, with its window in the query. */
export function evidenceHref(planId: string, evidence: Evidence): string {
  const page = PAGE_OF[evidence.chart];
  const query = new URLSearchParams({
    chart: evidence.chart,
    from: evidence.from.toISOString(),
    to: evidence.to.toISOString(),
  });
  return `/plans/${planId}${page ? `/${page}` : ""}?${query}`;
}

export function clock(at: Date): string {
  return at.toISOString().slice(11, 19);
}

export function seconds(ms: number): string {
  return `${Math.round(ms / 1000)} s`;
}

/**
 * Null when `samples` (oldest first) measure the whole window [from, to] with no gap longer than
 * `maxGapMs` — a series CDC writes about once a second; otherwise why they do not. A gap is exactly
 * when lag is not measured because nothing is streaming, so it must never read as "low lag".
 */
export function coverageProblem(
  what: string,
  samples: readonly Sample[],
  from: Date,
  to: Date,
  maxGapMs: number,
): string | null {
  const inReach = samples.filter(
    (s) => s.at.getTime() >= from.getTime() - maxGapMs && s.at.getTime() <= to.getTime(),
  );
  const newest = inReach.at(-1);
  const oldest = inReach[0];
  if (!newest || !oldest) {
    const last = samples.filter((s) => s.at <= to).at(-1);
    return last
      ? `No ${what} measured since ${clock(last.at)} (${seconds(to.getTime() - last.at.getTime())} ago): is CDC streaming?`
      : `No ${what} has been measured yet: is CDC streaming?`;
  }
  if (to.getTime() - newest.at.getTime() > maxGapMs) {
    return `The last ${what} was measured at ${clock(newest.at)}, ${seconds(to.getTime() - newest.at.getTime())} ago: the measurement is stale (is CDC streaming?).`;
  }
  if (oldest.at.getTime() > from.getTime() + maxGapMs) {
    return `${what[0]?.toUpperCase()}${what.slice(1)} was measured only since ${clock(oldest.at)}; the window starts at ${clock(from)}: wait for a whole window of measurements.`;
  }
  for (let i = 1; i < inReach.length; i++) {
    const a = inReach[i - 1];
    const b = inReach[i];
    if (a && b && b.at.getTime() - a.at.getTime() > maxGapMs) {
      return `No ${what} was measured between ${clock(a.at)} and ${clock(b.at)} (${seconds(b.at.getTime() - a.at.getTime())}): the window has a gap.`;
    }
  }
  return null;
}

/** The samples inside [from, to], plus the last one before `from` (it held at `from`). */
export function windowSamples(samples: readonly Sample[], from: Date, to: Date): Sample[] {
  const before = samples.filter((s) => s.at < from).at(-1);
  const inside = samples.filter((s) => s.at >= from && s.at <= to);
  return before ? [before, ...inside] : inside;
}
