import { expect, it } from "vitest";
import { backfillRateSeries } from "./series";

const at = (s: number) => new Date(1_800_000_000_000 + s * 1_000);

it("draws zeros across a pause instead of a line as if copying went on", () => {
  const samples = [0, 2, 4, 30, 32].map((s) => ({ name: "backfill.rows_per_s:t", value: 1_000, at: at(s) }));
  const series = backfillRateSeries(samples);
  const inPause = series.filter((p) => p.t > at(4).getTime() && p.t < at(30).getTime());
  expect(inPause.length).toBeGreaterThan(0);
  expect(inPause.every((p) => p.value === 0)).toBe(true);
  expect(series.filter((p) => p.value === 1_000)).toHaveLength(5);
});
