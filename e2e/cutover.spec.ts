// An operator cuts one tenant over to its shard from the routing page and back to legacy: the
// dialog shows the dry run first (what will happen, lag, expected freeze, no blockers), takes a
// reason, follows the attempt live to "done"; the page then shows the new owner and the attempt
// in the Cutovers table. A viewer sees the button disabled with the reason.
import { expect, type Page, test } from "@playwright/test";
import { cancelMovement, planAtTwoWayCdc, screenshot, signIn, trpc } from "./helpers";

const TENANT = "42";
const BUDGET_MS = 10_000;

const shot = (page: Page, name: string) => screenshot(page, `cutover-${name}`);

/** Copies the plan's data and waits until the backfill is done and forward CDC measures its lag. */
async function movingPlan(page: Page, name: string) {
  // The browser tests share two cores with the build and other checkouts: a 2 s budget aborts
  // there now and then (the engine's own tests measure the freeze window); this spec is about
  // what the operator sees, so it gives the tenant room.
  const plan = await planAtTwoWayCdc(page, name, { freezeBudgetMs: BUDGET_MS });
  await trpc(page, "movement.start", { planId: plan.id, reason: "copy for the cutover", resetShards: true });
  await expect
    .poll(
      async () => {
        const f = await trpc<{ backfill: { done: boolean }; lag: { state: string; fresh?: boolean } }>(
          page,
          `figures.plan?input=${encodeURIComponent(JSON.stringify({ json: { planId: plan.id } }))}`,
        );
        return f.backfill.done && f.lag.state === "measured" && f.lag.fresh === true;
      },
      { timeout: 120_000, intervals: [1_000] },
    )
    .toBe(true);
  return plan;
}

async function lookUp(page: Page, planId: string) {
  await page.goto(`/plans/${planId}/routing`);
  await page.getByLabel("Tenant key").fill(TENANT);
  await page.getByRole("button", { name: "Show route" }).click();
  await expect(page.getByTestId("tenant-route")).toBeVisible();
}

/** Opens the dialog from `buttonName`, checks the dry run, confirms, and waits for "done". */
async function cutOver(page: Page, buttonName: RegExp, expectTo: RegExp, shotName: string) {
  await page.getByRole("button", { name: buttonName }).click();
  const dialog = page.getByTestId("cutover-dialog");
  await expect(dialog).toBeVisible();
  await expect(dialog.getByText("Dry run: nothing has changed yet")).toBeVisible();
  await expect(dialog.getByTestId("cutover-dry-run")).toContainText(
    `Writes to tenant ${TENANT} pause for up to ${BUDGET_MS / 1_000} s`,
  );
  await expect(dialog.getByTestId("cutover-route")).toHaveText(expectTo);
  // The feeding stream's lag must be measured and small: the dry run says so once it is.
  await expect(dialog.getByTestId("cutover-no-blockers")).toBeVisible({ timeout: 60_000 });
  await expect(dialog.getByTestId("cutover-expected-freeze")).toContainText("about");
  await shot(page, `${shotName}-dry-run`);

  await dialog.getByLabel("Reason (recorded in the audit log)").fill("Tenant 42 asked to go first");
  await dialog.getByRole("button", { name: /^(Cut over to|Move back to legacy)/ }).click();
  await expect(dialog.getByTestId("cutover-follow")).toBeVisible();
  await expect(dialog.getByTestId("cutover-outcome")).toBeVisible({ timeout: 60_000 });
  await shot(page, `${shotName}-outcome`);
  await expect(dialog.getByTestId("cutover-status")).toContainText("Done");
  await expect(dialog.getByTestId("cutover-outcome")).toContainText("Its writes were paused for");
  await dialog.getByRole("button", { name: "Close" }).click();
  await expect(dialog).toBeHidden();
}

test("an operator cuts a tenant over to its shard and back to legacy, following each live", async ({
  page,
}) => {
  test.setTimeout(300_000);
  await signIn(page, "operator");
  const plan = await movingPlan(page, `Cutover ${Date.now().toString(36)}`);
  try {
    await lookUp(page, plan.id);
    await expect(page.getByTestId("tenant-owner")).toHaveText(/legacy/);
    await expect(page.getByTestId("header-reverse-lag")).toHaveText(/^\W*—$/);

    await cutOver(page, /^Cut over to shard-\d$/, /^legacy → shard-\d$/, "1-to-shard");
    // The page follows: the tenant's owner is the shard, the attempt is done in the Cutovers table.
    await expect(page.getByTestId("tenant-owner")).toHaveText(/shard-\d/);
    await expect(page.getByTestId("tenant-frozen")).toContainText("Accepted");
    const first = page.getByTestId("cutover-row").first();
    await expect(first).toContainText("Done");
    await expect(first).toContainText(/legacy → shard-\d/);
    await expect(first).toContainText("operator@shardshift.local");
    await expect(first).toContainText("Tenant 42 asked to go first");
    await expect(first).toContainText(/\d+ ms|\d(\.\d)? s/);
    // A tenant on a shard: the reverse stream runs and its lag reaches the header.
    await expect(page.getByTestId("header-reverse-lag")).toHaveText(/\d+ ms|Not measured yet/, {
      timeout: 30_000,
    });
    await shot(page, "2-routing-on-shard");
    // The overview charts forward and reverse lag together and says the reverse figure in words.
    await page.getByRole("link", { name: "Overview" }).click();
    await expect(page.getByTestId("lag-chart")).toBeVisible();
    await expect(page.getByTestId("overview-reverse-lag")).toHaveText(/\d+ ms|Not measured yet/);
    await shot(page, "2b-overview-on-shard");
    await lookUp(page, plan.id);
    await expect(page.getByTestId("tenant-owner")).toHaveText(/shard-\d/);

    await cutOver(page, /^Back to legacy$/, /^shard-\d → legacy$/, "3-to-legacy");
    await expect(page.getByTestId("tenant-owner")).toHaveText(/legacy/);
    await expect(page.getByTestId("cutover-row")).toHaveCount(2);
    await expect(page.getByTestId("cutover-row").first()).toContainText(/shard-\d → legacy/);
    await expect(page.getByTestId("cutover-row").first()).toContainText("Done");
    await expect(page.getByTestId("tenant-history-row").first()).toContainText("legacy");
    await shot(page, "4-routing-back-on-legacy");
  } finally {
    await cancelMovement(page, plan.id);
  }
});

test("a viewer sees the cut-over button disabled, with the reason", async ({ page }) => {
  test.setTimeout(120_000);
  await signIn(page, "operator");
  const plan = await planAtTwoWayCdc(page, `Cutover viewer ${Date.now().toString(36)}`);
  await signIn(page, "viewer");
  await lookUp(page, plan.id);
  const button = page.getByTestId("cutover-button").getByRole("button");
  await expect(button).toBeDisabled();
  await expect(button).toHaveText(/^Cut over to shard-\d$/);
  await expect(page.getByTestId("cutover-button")).toContainText(
    "Needs the Operator role; you are signed in as Viewer.",
  );
  await expect(page.getByTestId("cutovers-none")).toHaveText(`No cutover of tenant ${TENANT} yet.`);
  await shot(page, "5-viewer-disabled");
});
