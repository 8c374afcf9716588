// Turns raw metric samples into chart series. Backfill rate samples are per table (each copier
// reports its own); the chart shows their sum per 2-second bucket. Figures and ETAs are not made
// here: they come from the server (server/services/plans/figures.ts), one source for every page.
import type { SeriesPoint } from "@/components/charts/time-series-chart";

export interface Sample {
  name: string;
  value: number;
  at: Date;
}

const BUCKET_MS = 2_000;
/** Copiers report every 2–3 s while they copy; a longer silence is a pause. */
const GAP_MS = 8_000;

export function backfillRateSeries(samples: Sample[]): SeriesPoint[] {
  const buckets = new Map<number, Map<string, number[]>>();
  for (const s of samples) {
    if (!s.name.startsWith("backfill.rows_per_s:")) continue;
    const bucket = Math.floor(new Date(s.at).getTime() / BUCKET_MS) * BUCKET_MS;
    const tables = buckets.get(bucket) ?? new Map<string, number[]>();
    tables.set(s.name, [...(tables.get(s.name) ?? []), s.value]);
    buckets.set(bucket, tables);
  }
  const points = [...buckets.entries()]
    .sort(([a], [b]) => a - b)
    .map(([t, tables]) => ({
      t,
      value: [...tables.values()].reduce(
        (sum, values) => sum + values.reduce((a, b) => a + b, 0) / values.length,
        0,
      ),
    }));
  // No samples for a while (paused, or no copier running) means nothing was copied: draw zeros
  // there, not a straight line across the gap as if copying had gone on.
  return points.flatMap((p, i) => {
    const previous = points[i - 1];
    if (!previous || p.t - previous.t <= GAP_MS) return [p];
    return [{ t: previous.t + BUCKET_MS, value: 0 }, { t: p.t - BUCKET_MS, value: 0 }, p];
  });
}

export function namedSeries(samples: Sample[], name: string): SeriesPoint[] {
  return samples.filter((s) => s.name === name).map((s) => ({ t: new Date(s.at).getTime(), value: s.value }));
}
