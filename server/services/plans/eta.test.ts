import { describe, expect, it } from "vitest";
import { combinedRateSeries, estimateEta, formatEta, type RatePoint, smoothRate } from "./eta";

const every2s = (values: number[], start = 0): RatePoint[] =>
  values.map((value, i) => ({ t: start + i * 2_000, value }));

describe("smoothRate", () => {
  it("is the rate itself for a steady rate, with no variation", () => {
    const rate = smoothRate(every2s(Array(20).fill(1_000)));
    expect(rate?.rowsPerSecond).toBeCloseTo(1_000);
    expect(rate?.variation).toBeCloseTo(0);
    expect(rate?.samples).toBe(20);
  });

  it("damps a single spike instead of jumping to it", () => {
    const rate = smoothRate(every2s([...Array(20).fill(1_000), 20_000]));
    // The latest sample alone would say 20,000 rows/s.
    expect(rate?.rowsPerSecond).toBeGreaterThan(1_000);
    expect(rate?.rowsPerSecond).toBeLessThan(3_000);
    expect(rate?.variation).toBeGreaterThan(0.1);
  });

  it("follows a lasting change of rate: most of the way within a minute", () => {
    const rate = smoothRate(every2s([...Array(30).fill(1_000), ...Array(30).fill(5_000)]));
    expect(rate?.rowsPerSecond).toBeGreaterThan(4_400);
  });

  it("weighs by time, not by sample count, and ignores the order samples arrive in", () => {
    const points = [
      { t: 0, value: 1_000 },
      { t: 60_000, value: 3_000 },
      { t: 59_000, value: 3_000 },
    ];
    const rate = smoothRate(points);
    // A minute (three half-lives) after the first sample, it weighs 1/8 at most.
    expect(rate?.rowsPerSecond).toBeGreaterThan(2_700);
  });

  it("has nothing to say without samples", () => {
    expect(smoothRate([])).toBeNull();
  });
});

describe("combinedRateSeries", () => {
  it("adds tables that report at their own moments without dips", () => {
    const a = every2s(Array(10).fill(1_000), 0);
    const b = every2s(Array(10).fill(500), 700);
    const series = combinedRateSeries([a, b]);
    // From b's first sample on, every point is both tables together.
    expect(series.filter((p) => p.t >= 700).every((p) => p.value === 1_500)).toBe(true);
  });

  it("keeps the plan's rate across one table finishing and the next starting", () => {
    const done = every2s([...Array(10).fill(1_000), 0], 0); // reports 0 once done, at 20 s
    const next = every2s(Array(10).fill(1_000), 22_000);
    const rate = smoothRate(combinedRateSeries([done, next]));
    expect(rate?.rowsPerSecond).toBeGreaterThan(900);
  });

  it("has no points while nothing reports (a pause), so a resume is not averaged with zeros", () => {
    const before = every2s(Array(10).fill(1_000), 0);
    const after = every2s(Array(5).fill(1_000), 120_000); // resumed two minutes later
    const series = combinedRateSeries([before, after]);
    expect(series.every((p) => p.value === 1_000)).toBe(true);
    expect(smoothRate(series)?.rowsPerSecond).toBeCloseTo(1_000);
  });

  it("lets a table that stopped reporting drop out after the hold", () => {
    const stopped = every2s(Array(3).fill(1_000), 0);
    const going = every2s(Array(20).fill(200), 0);
    expect(combinedRateSeries([stopped, going]).at(-1)?.value).toBe(200);
  });
});

describe("estimateEta", () => {
  const steady = smoothRate(every2s(Array(30).fill(1_000)));

  it("is remaining / smoothed rate, inside its range", () => {
    const eta = estimateEta({ remaining: 240_000, done: 240_000, rate: steady });
    expect(eta?.likely).toBeCloseTo(240);
    expect(eta?.low).toBeLessThan(240);
    expect(eta?.high).toBeGreaterThan(240);
    expect(eta?.text).toMatch(/^about 4 min \(\d–\d\)$/);
  });

  it("narrows as the work proceeds at the same rate", () => {
    const width = (done: number, remaining: number) => {
      const eta = estimateEta({ remaining, done, rate: steady });
      if (!eta) throw new Error("no ETA");
      return (eta.high - eta.low) / eta.likely;
    };
    const early = width(50_000, 950_000);
    const middle = width(500_000, 500_000);
    const late = width(950_000, 50_000);
    expect(early).toBeGreaterThan(middle);
    expect(middle).toBeGreaterThan(late);
    expect(late).toBeLessThan(0.3);
  });

  it("is wider for a rate that wobbles than for a steady one", () => {
    const wobbly = smoothRate(every2s(Array.from({ length: 30 }, (_, i) => (i % 2 ? 400 : 1_600))));
    const a = estimateEta({ remaining: 100_000, done: 100_000, rate: steady });
    const b = estimateEta({ remaining: 100_000, done: 100_000, rate: wobbly });
    if (!a || !b) throw new Error("no ETA");
    expect(b.high / b.low).toBeGreaterThan(a.high / a.low);
  });

  it("never spans more than 4× on the high side, even with one sample at the start", () => {
    const eta = estimateEta({ remaining: 1_000_000, done: 0, rate: smoothRate([{ t: 0, value: 500 }]) });
    if (!eta) throw new Error("no ETA");
    expect(eta.high / eta.likely).toBeLessThanOrEqual(4.0001);
  });

  it("gives no ETA when nothing is left or nothing moves", () => {
    expect(estimateEta({ remaining: 0, done: 10, rate: steady })).toBeNull();
    expect(estimateEta({ remaining: 10, done: 0, rate: null })).toBeNull();
    expect(estimateEta({ remaining: 10, done: 0, rate: smoothRate(every2s([0, 0, 0])) })).toBeNull();
  });
});

describe("formatEta", () => {
  it("uses one unit, from the likely figure", () => {
    expect(formatEta(240, 180, 360)).toBe("about 4 min (3–6)");
    expect(formatEta(40, 33, 52)).toBe("about 40 s (33–52)");
    expect(formatEta(9_000, 6_500, 14_400)).toBe("about 2.5 h (1.8–4)");
    expect(formatEta(125, 61, 310)).toBe("about 2 min (1–5)");
  });

  it("says one figure when the range rounds to it", () => {
    expect(formatEta(240, 230, 250)).toBe("about 4 min");
    expect(formatEta(0.2, 0.1, 0.3)).toBe("about 1 s");
  });
});
