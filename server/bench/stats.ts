// Small numeric helpers for the benchmark.

export interface LagSummary {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentile of an ascending array (p in 0…1). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length)));
  return sorted[rank - 1] ?? Number.NaN;
}

export function summarizeLags(values: readonly number[]): LagSummary {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    count: sorted.length,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted.at(-1) ?? Number.NaN,
  };
}

export interface RateSample {
  /** Milliseconds since the measured run started. */
  atMs: number;
  rows: number;
}

/**
 * Rows per second between fromMs and toMs, from samples of a growing counter: the first sample at
 * or after fromMs and the last at or before toMs, divided by the time between those two samples.
 */
export function rateBetween(
  samples: readonly RateSample[],
  fromMs: number,
  toMs: number,
): { rowsPerSecond: number; fromMs: number; toMs: number } | null {
  const first = samples.find((s) => s.atMs >= fromMs);
  const last = samples.findLast((s) => s.atMs <= toMs);
  if (!first || !last || last.atMs - first.atMs < 1_000) return null;
  return {
    rowsPerSecond: ((last.rows - first.rows) * 1000) / (last.atMs - first.atMs),
    fromMs: first.atMs,
    toMs: last.atMs,
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` every `intervalMs` until it returns a truthy value; throws `what` after timeoutMs. */
export async function pollUntil<T>(
  what: string,
  check: () => Promise<T | null | undefined | false>,
  options: { timeoutMs: number; intervalMs?: number },
): Promise<T> {
  const deadline = performance.now() + options.timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (performance.now() > deadline) {
      throw new Error(`Timed out after ${Math.round(options.timeoutMs / 1000)} s waiting for ${what}.`);
    }
    await sleep(options.intervalMs ?? 100);
  }
}
