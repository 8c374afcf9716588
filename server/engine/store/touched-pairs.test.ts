// The recent parity pass reads touched pairs oldest first and forgets exactly the ones it checked,
// keeping any stamped within the re-stamp margin before it began (and every other plan's); CDC
// re-stamps a pair only once that margin has passed.
import crypto from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { useControlPlane } from "../../testing/control-plane";
import { upsertTouched } from "./cdc-bookkeeping";
import { forgetCheckedPairs, RESTAMP_AFTER_SECONDS, readTouchedPairs } from "./touched-pairs";

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
        // Stamped 20 s before the pass began: a change after that may have gone un-re-stamped
        // (CDC re-stamps a pair at most every 30 s), so it must stay for the next pass.
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

    // The pass began at 00:01:20; pairs stamped within RESTAMP_AFTER_SECONDS before it stay.
    const checked = [...read, { tableName: "public.events", tenantKey: "9" }];
    const forgotten = await forgetCheckedPairs(planId, checked, at("2026-01-01T00:01:20Z"));
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

  it("CDC re-stamps a pair only once its stamp is older than the margin", async () => {
    const planId = crypto.randomUUID();
    const ago = (seconds: number) => new Date(Date.now() - seconds * 1000);
    await db().parityTouched.createMany({
      data: [
        { planId, tableName: "public.tasks", tenantKey: "fresh", touchedAt: ago(RESTAMP_AFTER_SECONDS - 10) },
        { planId, tableName: "public.tasks", tenantKey: "stale", touchedAt: ago(RESTAMP_AFTER_SECONDS + 10) },
      ],
    });
    const before = Date.now();
    const client = new pg.Client({ connectionString: control.url });
    await client.connect();
    try {
      await upsertTouched(client, planId, [
        { table: "public.tasks", tenant: "fresh" },
        { table: "public.tasks", tenant: "stale" },
        { table: "public.tasks", tenant: "new" },
      ]);
    } finally {
      await client.end();
    }
    const rows = await db().parityTouched.findMany({ where: { planId } });
    const stamp = Object.fromEntries(rows.map((r) => [r.tenantKey, r.touchedAt.getTime()]));
    expect(Object.keys(stamp).sort()).toEqual(["fresh", "new", "stale"]);
    expect(stamp.fresh).toBeLessThan(before - (RESTAMP_AFTER_SECONDS - 15) * 1000);
    expect(stamp.stale).toBeGreaterThanOrEqual(before - 1000);
    expect(stamp.new).toBeGreaterThanOrEqual(before - 1000);
  });
});
