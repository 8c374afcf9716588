// The recent parity pass reads touched pairs oldest first and forgets exactly the ones it checked,
// keeping any touched again after it began (and every other plan's).
import crypto from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { useControlPlane } from "../../testing/control-plane";
import { forgetCheckedPairs, readTouchedPairs } from "./touched-pairs";

let control: Awaited<ReturnType<typeof useControlPlane>>;

beforeAll(async () => {
  control = await useControlPlane("touched_pairs");
});

afterAll(async () => {
  await control?.drop();
});

const at = (iso: string) => new Date(iso);

describe("touched pairs", () => {
  it("reads oldest first and forgets only what was checked and not touched since", async () => {
    const planId = crypto.randomUUID();
    const otherPlan = crypto.randomUUID();
    // Keys with quotes, commas and braces: the pairs travel as JSON, not as an array literal.
    const odd = `t"1,{x}'`;
    await db().parityTouched.createMany({
      data: [
        { planId, tableName: "public.tasks", tenantKey: "7", touchedAt: at("2026-01-01T00:00:02Z") },
        { planId, tableName: "public.tasks", tenantKey: odd, touchedAt: at("2026-01-01T00:00:01Z") },
        { planId, tableName: "public.users", tenantKey: "7", touchedAt: at("2026-01-01T00:00:03Z") },
        // Touched again after the pass began reading: it must stay for the next pass.
        { planId, tableName: "public.events", tenantKey: "9", touchedAt: at("2026-01-01T00:01:00Z") },
        {
          planId: otherPlan,
          tableName: "public.tasks",
          tenantKey: "7",
          touchedAt: at("2026-01-01T00:00:00Z"),
        },
      ],
    });

    const read = await readTouchedPairs(planId, 3);
    expect(read).toEqual([
      { tableName: "public.tasks", tenantKey: odd },
      { tableName: "public.tasks", tenantKey: "7" },
      { tableName: "public.users", tenantKey: "7" },
    ]);

    const checked = [...read, { tableName: "public.events", tenantKey: "9" }];
    const forgotten = await forgetCheckedPairs(planId, checked, at("2026-01-01T00:00:30Z"));
    expect(forgotten).toBe(3);

    const left = await db().parityTouched.findMany({
      select: { planId: true, tableName: true, tenantKey: true },
      orderBy: [{ planId: "asc" }, { tableName: "asc" }],
    });
    expect(left).toEqual(
      expect.arrayContaining([
        { planId, tableName: "public.events", tenantKey: "9" },
        { planId: otherPlan, tableName: "public.tasks", tenantKey: "7" },
      ]),
    );
    expect(left).toHaveLength(2);
    expect(await forgetCheckedPairs(planId, [], new Date())).toBe(0);
  });
});
