// Copy rates and ETAs people can plan with. Rate samples jump (chunk sizes, back-offs, other load
// on the servers), so the rate is an exponentially weighted moving average over time, not the
// latest sample or the min/max of a minute (which gave ranges like "23 s – 25 min"). The ETA is a
// range around remaining / smoothed rate whose width comes from three doubts, each shrinking on its
// own: how much the rate wobbles (its weighted spread), how much work is left (a rate measured on
// the first tenth says little about the rest), and how few samples we have.
// Pure functions: the figures service feeds them samples and counts.

export interface RatePoint {
  /** ms since the epoch */
  t: number;
  /** rows per second */
  value: number;
}

export interface SmoothedRate {
  rowsPerSecond: number;
  /** weighted standard deviation / mean: 0 for a steady rate */
  variation: number;
  samples: number;
}

export interface Eta {
  /** seconds */
  likely: number;
  low: number;
  high: number;
  /** "about 4 min (3–6)" */
  text: string;
}

/** A sample's weight halves every this many ms of age (relative to the samples after it). */
export const RATE_HALF_LIFE_MS = 20_000;
/** The widest range: the high end is at most 4× the likely figure. */
const MAX_DOUBT = 0.75;

/**
 * Time-aware EWMA (and weighted variance) of rate samples, oldest to newest: a sample's weight
 * decays with the time that passed after it, so uneven sampling does not skew the mean.
 */
export function smoothRate(points: RatePoint[], halfLifeMs = RATE_HALF_LIFE_MS): SmoothedRate | null {
  const sorted = points.filter((p) => Number.isFinite(p.value) && p.value >= 0).sort((a, b) => a.t - b.t);
  const first = sorted[0];
  if (!first) return null;
  let mean = first.value;
  let variance = 0;
  let previous = first.t;
  for (const p of sorted.slice(1)) {
    const alpha = 1 - 2 ** (-Math.max(0, p.t - previous) / halfLifeMs);
    const diff = p.value - mean;
    const step = alpha * diff;
    mean += step;
    variance = (1 - alpha) * (variance + diff * step);
    previous = p.t;
  }
  return {
    rowsPerSecond: mean,
    variation: mean > 0 ? Math.sqrt(variance) / mean : 0,
    samples: sorted.length,
  };
}

/**
 * Several tables' rate samples as one series of the plan's rate: on a 2 s grid, the sum of each
 * table's latest sample, each held for `holdMs` (copiers report every 2–3 s, at their own moments;
 * a plain per-bucket sum dips whenever one misses a bucket). Smoothing this series, rather than
 * adding up the tables that copy at this instant, keeps the plan's rate steady across the moment
 * one table finishes and the next has not reported yet.
 */
export function combinedRateSeries(
  byTable: Iterable<RatePoint[]>,
  stepMs = 2_000,
  holdMs = 4_000,
): RatePoint[] {
  const tables = [...byTable].map((points) => [...points].sort((a, b) => a.t - b.t)).filter((p) => p.length);
  if (tables.length === 0) return [];
  const first = Math.min(...tables.map((p) => p[0]?.t ?? Number.POSITIVE_INFINITY));
  const last = Math.max(...tables.map((p) => p.at(-1)?.t ?? 0));
  const grid: number[] = [];
  for (let t = first; t < last; t += stepMs) grid.push(t);
  grid.push(last);
  // A moment when no table reported (paused, between slices) is no sample, not a zero rate: zeros
  // there would drag the rate down for a minute after every resume.
  return grid.flatMap((t) => {
    let reporting = false;
    const value = tables.reduce((sum, points) => {
      let latest: RatePoint | undefined;
      for (const p of points) {
        if (p.t > t) break;
        latest = p;
      }
      if (!latest || t - latest.t > holdMs) return sum;
      reporting = true;
      return sum + latest.value;
    }, 0);
    return reporting ? [{ t, value }] : [];
  });
}

/**
 * The time left for `remaining` units of work at a smoothed rate, as a likely figure and a range.
 * Null when nothing is left or nothing moves (a zero rate has no ETA: say "paused" or "stalled").
 */
export function estimateEta(input: {
  remaining: number;
  done: number;
  rate: SmoothedRate | null;
}): Eta | null {
  const { remaining, done, rate } = input;
  if (remaining <= 0 || !rate || rate.rowsPerSecond <= 0) return null;
  const leftFraction = remaining / Math.max(remaining, remaining + Math.max(0, done));
  const doubt = Math.min(
    MAX_DOUBT,
    Math.hypot(rate.variation, 0.4 * leftFraction, 1 / Math.max(1, rate.samples)),
  );
  const likely = remaining / rate.rowsPerSecond;
  const low = likely / (1 + doubt);
  const high = likely / (1 - doubt);
  return { likely, low, high, text: formatEta(likely, low, high) };
}

/** "about 4 min (3–6)", "about 40 s (33–52)", "about 2.5 h (1.8–4)"; one unit, from the likely figure. */
export function formatEta(likely: number, low: number, high: number): string {
  const [unit, divisor, digits] =
    likely < 90
      ? (["s", 1, 0] as const)
      : likely < 90 * 60
        ? (["min", 60, 0] as const)
        : (["h", 3600, 1] as const);
  const show = (seconds: number) => {
    const value = Number((seconds / divisor).toFixed(digits));
    return Math.max(unit === "h" ? 0.1 : 1, value).toLocaleString("en-US");
  };
  const [l, m, h] = [show(low), show(likely), show(high)];
  return l === h ? `about ${m} ${unit}` : `about ${m} ${unit} (${l}–${h})`;
}
