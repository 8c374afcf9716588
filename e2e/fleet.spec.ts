// A TPM's morning: the plans list shows each plan's progress and ETA, forward lag and parity in
// words and colour; the plan's header and its backfill cards show the same figures; pause clears
// the copy rate and marks the charts.
import { expect, test } from "@playwright/test";
import { cancelMovement, planAtTwoWayCdc, screenshot, signIn, trpc } from "./helpers";

test("the plans list shows progress, lag and parity for a running plan", async ({ page }) => {
  test.setTimeout(240_000);
  await signIn(page, "operator");
  const name = `Fleet ${Date.now().toString(36)}`;
  // Slow enough to watch it copy: 30,000 rows at 1,000 rows/s.
  const plan = await planAtTwoWayCdc(page, name, { backfillRowsPerSecond: 1_000 });
  // Shards may hold rows from an earlier spec's cancelled movement: empty them first.
  await trpc(page, "movement.start", { planId: plan.id, reason: "fleet view test", resetShards: true });

  try {
    await page.goto("/");
    const row = page.getByTestId("fleet-row").filter({ hasText: name });
    await expect(row).toHaveCount(1);
    await expect(row.getByText("Copying")).toBeVisible({ timeout: 30_000 });
    await expect(row.getByTestId("plan-progress")).toHaveText(/^Backfill [\d.]+%$/, { timeout: 30_000 });
    await expect(row.getByTestId("fleet-eta")).toHaveText(/^about \d+ (s|min)/, { timeout: 30_000 });
    await expect(row.getByRole("progressbar")).toBeVisible();
    await expect(row.getByTestId("fleet-lag")).toHaveText(/\d[\d,]* ms$/, { timeout: 30_000 });
    await expect(row.getByTestId("fleet-parity")).toContainText("Not checked yet");
    await expect(row.getByTestId("breaker-state")).toHaveText(/Armed/);
    // Sortable: a click on a header sorts by it and says so.
    await page.getByRole("button", { name: "Progress" }).click();
    await expect(page.getByRole("columnheader", { name: "Progress" })).toHaveAttribute(
      "aria-sort",
      "ascending",
    );
    await screenshot(page, "20-fleet-copying");

    // The plan's header and the backfill cards read the same figures.
    await page.goto(`/plans/${plan.id}/backfill`);
    const headerLag = page.getByTestId("header-lag");
    const cardLag = page.getByTestId("stat-cdc-lag");
    await expect(cardLag).toHaveText(/\d+ ms/, { timeout: 30_000 });
    await expect
      .poll(async () => {
        const [header, card] = await Promise.all([headerLag.textContent(), cardLag.textContent()]);
        return (header ?? "").replace(/[^\d]/g, "") === (card ?? "x").replace(/[^\d]/g, "");
      })
      .toBe(true);
    await expect(page.getByTestId("stat-eta")).toHaveText(/^about \d+/);
    await expect(page.getByTestId("header-progress")).toHaveText(/^Backfill [\d.]+% · /);
    await expect(page.getByText("rows/s", { exact: true }).first()).toBeVisible();
    await expect(page.getByText("ms", { exact: true }).first()).toBeVisible();

    // Paused: no copy rate or ETA is left on screen, and the charts mark the pause.
    await trpc(page, "movement.control", { planId: plan.id, action: "pause", reason: "peak traffic" });
    await expect(page.getByTestId("stat-copy-rate")).toHaveText("Paused");
    await expect(page.getByTestId("stat-eta")).toHaveText("Paused");
    await expect(page.getByTestId("backfill-task").filter({ hasText: "rows/s" })).toHaveCount(0);
    await expect(page.getByTestId("chart-marker").filter({ hasText: "Paused" }).first()).toBeVisible();
    await screenshot(page, "21-backfill-paused-marked");

    // Resume fast; once copied, a full parity check: the list says the plan streams and is clean.
    await trpc(page, "movement.setRate", { planId: plan.id, rowsPerSecond: 100_000, reason: "quiet now" });
    await trpc(page, "movement.control", { planId: plan.id, action: "resume", reason: "traffic down" });
    await expect(page.getByTestId("stat-eta")).toHaveText("Done", { timeout: 90_000 });
    await expect(page.getByTestId("stat-copy-rate")).toHaveText("Done");
    await expect(
      page.getByTestId("chart-marker").filter({ hasText: "Rate 100,000 rows/s" }).first(),
    ).toBeVisible();
    await trpc(page, "parity.check", { planId: plan.id, kind: "full" });
    await page.goto("/");
    await expect(row.getByTestId("fleet-parity")).toContainText("Clean", { timeout: 60_000 });
    await expect(row.getByText("Streaming (CDC)")).toBeVisible();
    await expect(row.getByTestId("plan-progress")).toHaveText(/^Backfill done · 0 tenants on shards$/);
    await expect(row.getByTestId("fleet-lag")).toHaveText(/\d+ ms/);
    await screenshot(page, "22-fleet-clean");

    await page.goto(`/plans/${plan.id}`);
    await expect(page.getByTestId("header-progress")).toHaveText("Backfill done · 0 tenants on shards");
    await screenshot(page, "25-plan-header");

    await page.goto(`/plans/${plan.id}/parity`);
    await expect(page.getByLabel("Drift by table")).toBeVisible({ timeout: 30_000 });
    await screenshot(page, "23-parity-charts");
  } finally {
    // Leave nothing streaming for the other specs, whatever happened.
    await cancelMovement(page, plan.id);
  }
});
