import { describe, expect, it } from "vitest";
import { fitWindow, needsSeconds, timeTicks } from "./chart-window";

const NOW = 1_800_000_000_000;
const MIN = 60_000;

describe("fitWindow", () => {
  it("fits a fresh plan's five minutes of data, not the one-hour window", () => {
    const [start, end] = fitWindow([NOW - 5 * MIN, NOW - 2 * MIN, NOW], 60, NOW);
    expect(end).toBe(NOW);
    // The first point near the left edge, with a little room before it.
    expect(start).toBeLessThan(NOW - 5 * MIN);
    expect(start).toBeGreaterThan(NOW - 6 * MIN);
  });

  it("keeps the window when the data fills it, and ignores points outside it", () => {
    expect(fitWindow([NOW - 3 * 60 * MIN, NOW - 59 * MIN, NOW], 60, NOW)).toEqual([NOW - 60 * MIN, NOW]);
  });

  it("shows at least half a minute, and the whole window without data", () => {
    expect(fitWindow([NOW - 1_000], 60, NOW)).toEqual([NOW - 30_000, NOW]);
    expect(fitWindow([], 15, NOW)).toEqual([NOW - 15 * MIN, NOW]);
  });
});

it("labels seconds on spans under 15 minutes", () => {
  expect(needsSeconds([NOW - 5 * MIN, NOW])).toBe(true);
  expect(needsSeconds([NOW - 60 * MIN, NOW])).toBe(false);
});

it("spaces ticks evenly from the start to the end of the domain", () => {
  expect(timeTicks([NOW - 5 * MIN, NOW], 6)).toEqual([0, 1, 2, 3, 4, 5].map((i) => NOW - 5 * MIN + i * MIN));
});
