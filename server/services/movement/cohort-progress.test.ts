// The tenant census counts exactly what legacy holds per tenant, and cohort progress follows the
// checkpoints: nothing copied before the backfill, the tenants before a checkpoint copied (its own
// tenant in part), everything once the tables are done. Expected figures are computed here from the
// census by a plain reference, independently of the SQL.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { runBackfillSlice } from "../../engine/backfill/run-slice";
import { runTenantCensus } from "../../engine/backfill/tenant-census";
import { Prisma } from "../../generated/prisma/client";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { systemActor } from "../actor";
import { type CohortProgress, getCohortProgress } from "./cohort-progress";
import { startDataMovement } from "./movement";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
const actor = systemActor("cohort-test", "engineer@test");
const LADDER = [1, 5, 25, 100];

beforeAll(async () => {
  control = await useControlPlane("coh_control");
  legacy = await createTestDatabase("coh_legacy");
  shards = [await createTestDatabase("coh_shard0"), await createTestDatabase("coh_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: 250, rows: 20_000, seed: 3 });
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

/** Expected cohorts from the census and the tasks' state, computed row by row. */
async function expectedCohorts(planId: string): Promise<CohortProgress[]> {
  const census = await db().tenantCensus.findMany({ where: { planId } });
  const tasks = new Map(
    (await db().backfillTask.findMany({ where: { planId } })).map((t) => [t.tableName, t]),
  );
  const tenants = new Map<string, { rows: number; copied: number }>();
  for (const c of census) {
    const task = tasks.get(c.tableName);
    if (!task) throw new Error(`no task for ${c.tableName}`);
    const rows = Number(c.rows);
    const checkpointTenant = (task.lastKey as string[] | null)?.[0];
    const checkpoint = census.find((k) => k.tableName === c.tableName && k.tenantKey === checkpointTenant);
    let copied: number;
    if (task.status === "done") copied = rows;
    else if (checkpointTenant === undefined) copied = 0;
    else if (checkpoint && c.position < checkpoint.position) copied = rows;
    else if (checkpoint && c.position > checkpoint.position) copied = 0;
    else copied = Math.min(rows, Math.max(0, Number(task.rowsCopied) - Number(c.rowsBefore)));
    const t = tenants.get(c.tenantKey) ?? { rows: 0, copied: 0 };
    t.rows += rows;
    t.copied += copied;
    tenants.set(c.tenantKey, t);
  }
  const ranked = [...tenants.entries()].sort(([ka, a], [kb, b]) => a.rows - b.rows || (ka < kb ? -1 : 1));
  const n = ranked.length;
  const cohorts: CohortProgress[] = [];
  ranked.forEach(([, t], i) => {
    const index = LADDER.findIndex((pct) => i + 1 <= Math.ceil((n * pct) / 100));
    let c = cohorts[index];
    if (!c) {
      c = {
        cohort: index + 1,
        percent: LADDER[index] ?? 100,
        tenants: 0,
        tenantsCopied: 0,
        rowsTotal: 0,
        rowsCopied: 0,
        largestTenantRows: 0,
      };
      cohorts[index] = c;
    }
    c.tenants++;
    if (t.copied >= t.rows) c.tenantsCopied++;
    c.rowsTotal += t.rows;
    c.rowsCopied += t.copied;
    c.largestTenantRows = Math.max(c.largestTenantRows, t.rows);
  });
  return cohorts.filter(Boolean);
}

describe("tenant census and cohort progress", () => {
  it("counts every tenant exactly and reports cohorts as the checkpoints move", {
    timeout: 120_000,
  }, async () => {
    const plan = await planAtTwoWayCdc(
      actor,
      "cohorts",
      legacy.url,
      shards.map((s) => s.url),
    );
    await startDataMovement(actor, { planId: plan.id, reason: "go" });
    expect((await getCohortProgress(plan.id)).countedAt).toBeNull();

    await runTenantCensus(plan.id);
    const view = await getCohortProgress(plan.id);
    expect(view.countedAt).not.toBeNull();
    expect(view.tablesCounted).toBe(view.tablesToCount);

    // The census is legacy's truth, per table and tenant, in copy order.
    const { rows: truth } = await legacy.pool.query<{ tenant: string; rows: string }>(
      "select tenant_id::text as tenant, count(*) as rows from tasks group by tenant_id order by tenant_id",
    );
    const tasksCensus = await db().tenantCensus.findMany({
      where: { planId: plan.id, tableName: '"public"."tasks"' },
      orderBy: { position: "asc" },
    });
    expect(tasksCensus.map((c) => [c.tenantKey, Number(c.rows)])).toEqual(
      truth.map((t) => [t.tenant, Number(t.rows)]),
    );
    const tasksTask = await db().backfillTask.findFirstOrThrow({
      where: { planId: plan.id, tableName: '"public"."tasks"' },
    });
    expect(Number(tasksTask.rowsTotal)).toBe(truth.reduce((n, t) => n + Number(t.rows), 0));

    // Before any chunk: the ladder's shares of all tenants, smallest first, nothing copied.
    const { rows: tenantCount } = await legacy.pool.query<{ n: number }>(
      "select count(*)::int as n from tenants",
    );
    const n = tenantCount[0]?.n ?? 0;
    expect(view.cohorts.map((c) => c.tenants)).toEqual(
      LADDER.map(
        (pct, i) => Math.ceil((n * pct) / 100) - (i ? Math.ceil((n * (LADDER[i - 1] ?? 0)) / 100) : 0),
      ),
    );
    expect(view.cohorts.every((c) => c.rowsCopied === 0 && c.tenantsCopied === 0)).toBe(true);
    expect(view.cohorts[0]?.largestTenantRows).toBeLessThanOrEqual(view.cohorts[3]?.largestTenantRows ?? 0);
    expect(view.cohorts).toEqual(await expectedCohorts(plan.id));

    // A checkpoint halfway through a tenant: the tenants before it copied, half of it, none after.
    const middle = tasksCensus[Math.floor(tasksCensus.length / 2)];
    if (!middle) throw new Error("no tenants");
    await db().backfillTask.update({
      where: { id: tasksTask.id },
      data: {
        status: "running",
        lastKey: [middle.tenantKey, "1"],
        rowsCopied: middle.rowsBefore + middle.rows / 2n,
      },
    });
    const midway = await getCohortProgress(plan.id);
    expect(midway.cohorts).toEqual(await expectedCohorts(plan.id));
    const copiedMidway = midway.cohorts.reduce((s, c) => s + c.rowsCopied, 0);
    expect(copiedMidway).toBe(Number(middle.rowsBefore + middle.rows / 2n));

    // A checkpoint on a tenant the census never saw (created since): placed by rows copied.
    await db().backfillTask.update({
      where: { id: tasksTask.id },
      data: { lastKey: ["999999999", "1"], rowsCopied: middle.rowsBefore },
    });
    const unseen = await getCohortProgress(plan.id);
    expect(unseen.cohorts).toEqual(await expectedCohorts(plan.id));
    expect(unseen.cohorts.reduce((s, c) => s + c.rowsCopied, 0)).toBe(Number(middle.rowsBefore));

    // The real backfill, to the end: every cohort copied.
    await db().backfillTask.update({
      where: { id: tasksTask.id },
      data: { status: "pending", lastKey: Prisma.DbNull, rowsCopied: 0 },
    });
    for (const task of await db().backfillTask.findMany({ where: { planId: plan.id } })) {
      while ((await runBackfillSlice(task.id, 60_000)) !== "done") {}
    }
    const done = await getCohortProgress(plan.id);
    expect(done.cohorts.map((c) => c.tenantsCopied)).toEqual(done.cohorts.map((c) => c.tenants));
    expect(done.cohorts.map((c) => c.rowsCopied)).toEqual(done.cohorts.map((c) => c.rowsTotal));
  });
});
