// An operator draws the plan's cohort ladder, sees a gate block the first cohort with its reason
// (a gate window longer than the lag history: inconclusive), runs the dry run once the gates pass,
// promotes the first cohort with a reason, and sees its tenants reach the shards in the page's
// live per-tenant table.
import { expect, test } from "@playwright/test";
import { cancelMovement, controlPlanePool, planAtTwoWayCdc, screenshot, signIn, trpc } from "./helpers";

test("an operator draws the ladder, sees a gate block, dry-runs and promotes the first cohort", async ({
  page,
}) => {
  test.setTimeout(600_000);
  await signIn(page, "operator");
  const plan = await planAtTwoWayCdc(page, `Cohorts ${Date.now().toString(36)}`, {
    gateWindowMinutes: 60,
    gateSoakMinutes: 0,
    requireCleanParity: false,
    freezeBudgetMs: 10_000,
    promotionConcurrency: 4,
  });
  const pool = controlPlanePool();
  try {
    await trpc(page, "movement.start", {
      planId: plan.id,
      reason: "copy for the cohorts",
      resetShards: true,
    });
    await expect
      .poll(
        async () => {
          const f = await trpc<{ backfill: { done: boolean }; lag: { state: string; fresh?: boolean } }>(
            page,
            `figures.plan?input=${encodeURIComponent(JSON.stringify({ json: { planId: plan.id } }))}`,
          );
          return f.backfill.done && f.lag.state === "measured" && f.lag.fresh === true;
        },
        { timeout: 180_000, intervals: [1_000] },
      )
      .toBe(true);
    await expect
      .poll(
        async () =>
          (await pool.query("select census_at from data_movement where plan_id = $1", [plan.id])).rows[0]
            ?.census_at ?? null,
        { timeout: 120_000 },
      )
      .not.toBeNull();
    await trpc(page, "routing.installFences", { planId: plan.id, reason: "fences for the cohorts" });

    await page.goto(`/plans/${plan.id}`);
    await page.getByRole("link", { name: "Cohorts" }).click();
    await page.getByRole("button", { name: "Draw the ladder" }).click();
    await expect(page.getByTestId("cohort-row")).toHaveCount(4);

    // A 60-min gate window over a few minutes of lag history: the gate cannot see, and says so.
    await expect(page.getByTestId("gate-reason-forward-lag")).toContainText("wait for a whole window", {
      timeout: 30_000,
    });
    await page.getByLabel("Why promote now").fill("canary cohort");
    await page.getByRole("button", { name: "Promote cohort 1" }).click();
    await expect(page.getByTestId("promote-error")).toContainText("is inconclusive");

    // A 1-min window: the gates pass once a minute of lag is measured.
    await pool.query(
      `update plan set settings = settings || '{"gateWindowMinutes": 1}'::jsonb where id = $1`,
      [plan.id],
    );
    await expect
      .poll(
        async () =>
          (
            await trpc<{ open: boolean }>(
              page,
              `cohorts.gates?input=${encodeURIComponent(JSON.stringify({ json: { planId: plan.id, ordinal: 1 } }))}`,
            )
          ).open,
        { timeout: 180_000, intervals: [2_000] },
      )
      .toBe(true);
    await page.getByRole("button", { name: "Dry run" }).click();
    await expect(page.getByTestId("promote-dry-run")).toContainText("Nothing stands in the way");
    const planned = await page.getByTestId("dry-run-row").count();
    expect(planned).toBeGreaterThan(0);

    await page.getByRole("button", { name: "Promote cohort 1" }).click();
    await expect(page.getByTestId("promotion")).toHaveCount(1);
    await expect(page.getByTestId("promotion-tenant")).toHaveCount(planned);
    // Every tenant reaches its shard (an abort on the loaded machine is retried from the page).
    await page.getByLabel("Reason for pause, resume, stop or retry").fill("aborted on a busy machine");
    await expect
      .poll(
        async () => {
          for (const retry of await page.getByRole("button", { name: "Retry" }).all()) {
            if (await retry.isEnabled()) await retry.click();
          }
          return page.getByTestId("promotion-tenant-state").filter({ hasText: "on shard" }).count();
        },
        { timeout: 300_000, intervals: [2_000] },
      )
      .toBe(planned);
    await expect(page.getByTestId("promotion-status")).toHaveText(/done/);

    // What is on the shards now, at a glance on the cohorts page and as counts on the overview.
    await expect(page.getByTestId("placement-onShards")).toContainText(
      new RegExp(`^On shards${planned}\\s*tenants`),
    );
    await screenshot(page, "cohorts-promoted");
    await page.goto(`/plans/${plan.id}`);
    await expect(page.getByTestId("placement-onShards")).toContainText(
      new RegExp(`^On shards${planned}\\s*tenants`),
    );
    await expect(page.getByTestId("placement-row").first()).toBeVisible();
    await expect(page.getByTestId("evidence-bit_by_bit_routing")).toContainText(`${planned} of `);
    await screenshot(page, "cohorts-overview-promoted");
  } finally {
    await pool.end();
    await cancelMovement(page, plan.id);
  }
});
