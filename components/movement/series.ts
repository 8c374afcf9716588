// Turns raw metric samples into chart series. Backfill rate samples are per table (each copier
// reports its own); the chart shows their sum per 2-second bucket.
import type { SeriesPoint } from "@/components/charts/time-series-chart";

export interface Sample {
  name: string;
  value: number;
  at: Date;
}

const BUCKET_MS = 2_000;

export function backfillRateSeries(samples: Sample[]): SeriesPoint[] {
  const buckets = new Map<number, Map<string, number[]>>();
  for (const s of samples) {
    if (!s.name.startsWith("backfill.rows_per_s:")) continue;
    const bucket = Math.floor(new Date(s.at).getTime() / BUCKET_MS) * BUCKET_MS;
    const tables = buckets.get(bucket) ?? new Map<string, number[]>();
    tables.set(s.name, [...(tables.get(s.name) ?? []), s.value]);
    buckets.set(bucket, tables);
  }
  return [...buckets.entries()]
    .sort(([a], [b]) => a - b)
    .map(([t, tables]) => ({
      t,
      value: [...tables.values()].reduce(
        (sum, values) => sum + values.reduce((a, b) => a + b, 0) / values.length,
        0,
      ),
    }));
}

export function namedSeries(samples: Sample[], name: string): SeriesPoint[] {
  return samples.filter((s) => s.name === name).map((s) => ({ t: new Date(s.at).getTime(), value: s.value }));
}

/** ETA as a range from the slowest and fastest recent rates; null when nothing is moving. */
export function etaRange(
  remainingRows: number,
  rates: SeriesPoint[],
  now = Date.now(),
): { low: number; high: number } | null {
  const recent = rates.filter((p) => now - p.t < 60_000 && p.value > 0).map((p) => p.value);
  if (remainingRows <= 0 || recent.length === 0) return null;
  const fastest = Math.max(...recent);
  const slowest = Math.min(...recent);
  return { low: remainingRows / fastest, high: remainingRows / slowest };
}

export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** "2 min – 5 min", or one figure when the range rounds to it. */
export function formatEta(eta: { low: number; high: number }): string {
  const low = formatDuration(eta.low);
  const high = formatDuration(eta.high);
  return low === high ? low : `${low} – ${high}`;
}
