// A chart's time domain: the chosen window, but never wider than the data needs. A plan started
// five minutes ago, shown in a one-hour window, had its data squeezed against the right edge; now
// the axis starts shortly before the first point (or marker) and ends now.

const MIN_SPAN_MS = 30_000;

/** [start, end] of a chart ending `now`, at most `windowMinutes` wide, fitted to `times`. */
export function fitWindow(times: number[], windowMinutes: number, now: number): [number, number] {
  const windowStart = now - windowMinutes * 60_000;
  const inWindow = times.filter((t) => t >= windowStart && t <= now);
  if (inWindow.length === 0) return [windowStart, now];
  const first = Math.min(...inWindow);
  // A little room before the first point, so it does not sit on the axis.
  const start = first - Math.max(5_000, (now - first) * 0.05);
  return [Math.max(windowStart, Math.min(start, now - MIN_SPAN_MS)), now];
}

/** Whether tick labels need seconds: spans under 15 minutes do. */
export function needsSeconds(domain: [number, number]): boolean {
  return domain[1] - domain[0] < 15 * 60_000;
}

/** Evenly spaced ticks across the domain, so charts stacked above each other share their ticks. */
export function timeTicks(domain: [number, number], count = 6): number[] {
  const [start, end] = domain;
  if (!(end > start)) return [start];
  const step = (end - start) / (count - 1);
  return Array.from({ length: count }, (_, i) => Math.round(start + i * step));
}
