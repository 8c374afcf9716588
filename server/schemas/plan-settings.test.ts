// Cohort steps as the settings form sends them: each step above 0, strictly increasing, the last
// 100, and every refusal shown beside the field (an item's issue belongs to the list's input).
import { describe, expect, it } from "vitest";
import { zodFieldErrors } from "./field-errors";
import { DEFAULT_PLAN_SETTINGS, ZPlanSettings } from "./plan";

function refusal(cohortPercents: number[]) {
  const parsed = ZPlanSettings.safeParse({ ...DEFAULT_PLAN_SETTINGS, cohortPercents });
  return parsed.success ? null : zodFieldErrors(parsed.error);
}

describe("cohort steps", () => {
  it("accepts an increasing ladder that ends at 100", () => {
    expect(refusal([1, 5, 25, 100])).toBeNull();
    expect(refusal([100])).toBeNull();
  });

  it("refuses 0, repeats, decreases, fractions and a ladder short of 100, beside the field", () => {
    const cases: [number[], RegExp][] = [
      [[0, 100], /more than 0%/],
      [[1, 1, 100], /larger than the one before/],
      [[5, 1, 100], /larger than the one before/],
      [[1.5, 100], /whole percentages/],
      [[Number.NaN, 100], /as percentages/],
      [[1, 50], /last cohort step must be 100%/],
      [[1, 101], /at most 100%/],
    ];
    for (const [steps, message] of cases) {
      const errors = refusal(steps);
      expect(Object.keys(errors ?? {}), String(steps)).toEqual(["cohortPercents"]);
      expect(errors?.cohortPercents?.join(" "), String(steps)).toMatch(message);
    }
  });
});
