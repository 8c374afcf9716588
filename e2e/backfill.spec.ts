// An operator starts the data movement from the UI, watches progress, pauses (progress stops),
// resumes with a higher rate, and sees the backfill complete.
import { expect, type Page, test } from "@playwright/test";
import { cancelMovement, planAtTwoWayCdc, screenshot, signIn, trpc } from "./helpers";

test("start, pause, resume and complete a backfill from the UI", async ({ page }) => {
  test.setTimeout(180_000);
  await signIn(page, "operator");
  // A plan at "Two-way CDC", set up through the API (the journey spec covers the forms).
  const plan = await planAtTwoWayCdc(page, `Backfill ${Date.now().toString(36)}`, {
    backfillRowsPerSecond: 1_500,
  });
  try {
    await startPauseResumeComplete(page, plan.id);
  } finally {
    // Leave nothing streaming for the other specs, whatever happened: cancel drops the slot.
    await cancelMovement(page, plan.id);
  }
});

async function startPauseResumeComplete(page: Page, planId: string) {
  await page.goto(`/plans/${planId}/backfill`);
  await expect(page.getByText("Not started")).toBeVisible();
  await page.getByRole("button", { name: "Start backfill and CDC" }).click();
  const dialog = page.getByRole("dialog");
  // The shards may hold rows from another spec's cancelled movement (specs run in any order).
  await dialog.getByLabel(/Empty the shard tables first/).check();
  await dialog.getByLabel("Reason (recorded in the audit log)").fill("Start copying EU tenants");
  await dialog.getByRole("button", { name: "Start backfill and CDC" }).click();
  await expect(dialog).toBeHidden({ timeout: 60_000 });
  await expect(page.getByText("Movement running")).toBeVisible();

  const copied = page.getByTestId("stat-rows-copied");
  const rowsCopied = async () =>
    Number(((await copied.textContent()) ?? "").split(" of ")[0]?.replaceAll(/[^\d]/g, ""));
  await expect.poll(rowsCopied, { timeout: 30_000 }).toBeGreaterThan(2_000);
  await expect(page.getByText(/Streaming|\d+ ms/).first()).toBeVisible();
  // A table being copied shows its own rate.
  await expect(page.getByTestId("backfill-task").filter({ hasText: "rows/s" }).first()).toBeVisible({
    timeout: 30_000,
  });
  // The census counts rows per tenant beside the copy; then each cohort of the ladder has its row.
  await expect(page.getByTestId("cohort-row")).toHaveCount(4, { timeout: 30_000 });
  await screenshot(page, "11-backfill-running");

  await page.getByRole("button", { name: "Pause" }).click();
  await dialog.getByLabel("Reason (recorded in the audit log)").fill("Peak traffic");
  await dialog.getByRole("button", { name: "Pause" }).click();
  await expect(page.getByText("Movement paused")).toBeVisible();
  // Paused: after the chunk in flight, the count stops moving.
  await page.waitForTimeout(2_500);
  const paused = await rowsCopied();
  await page.waitForTimeout(3_000);
  expect(await rowsCopied()).toBe(paused);
  await screenshot(page, "12-backfill-paused");

  await page.getByRole("button", { name: "Resume" }).click();
  await dialog.getByLabel("Reason (recorded in the audit log)").fill("Traffic is down");
  await dialog.getByRole("button", { name: "Resume" }).click();
  await expect(page.getByText("Movement running")).toBeVisible();
  await page.getByLabel("Rate limit (rows/s)").fill("100000");
  await page.getByRole("button", { name: "Set rate" }).click();
  await dialog.getByLabel("Reason (recorded in the audit log)").fill("Off-peak: copy faster");
  await screenshot(page, "12b-backfill-rate-dialog");
  await dialog.getByRole("button", { name: "Set rate" }).click();
  await expect(page.getByTestId("stat-eta")).toHaveText("Done", { timeout: 90_000 });
  await expect(page.getByTestId("backfill-task").filter({ hasText: "done" })).toHaveCount(9);
  await expect(page.getByTestId("cohort-row").filter({ hasText: "all copied" })).toHaveCount(4);
  await screenshot(page, "13-backfill-done");

  await trpc(page, "movement.control", { planId, action: "cancel", reason: "test over" });
  await expect(page.getByText("Movement cancelled")).toBeVisible({ timeout: 30_000 });
}
