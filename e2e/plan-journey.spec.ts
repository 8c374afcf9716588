// An operator's journey: sign in, create a plan (after fixing field errors), see the timeline,
// advance it, edit settings, and find every change in the audit log with the chain verified.
import { expect, test } from "@playwright/test";
import { screenshot, signIn } from "./helpers";

test.describe.configure({ mode: "serial" });

const planName = `EU tenants ${Date.now().toString(36)}`;

test("sign-in refuses a wrong password with a clear message", async ({ page }) => {
  await page.goto("/");
  await expect(page).toHaveURL(/\/sign-in/);
  await screenshot(page, "01-sign-in");
  await page.getByLabel("Email").fill("operator@shardshift.local");
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByText(/do not match an account/)).toBeVisible();
});

test("an operator creates a plan, with field errors for bad input", async ({ page }) => {
  await signIn(page, "operator");
  await screenshot(page, "02-plans-empty");
  await page.getByRole("link", { name: "New plan" }).click();
  await expect(page.getByRole("heading", { name: "New migration plan" })).toBeVisible();

  // Browser-side validation, from the same zod schema as the API.
  await page.getByLabel("Shard key column").fill("Tenant ID");
  await page.getByLabel("Backfill rate limit (rows/s)").fill("5");
  await page.getByRole("button", { name: "Create plan" }).click();
  await expect(page.getByText("Name must be at least 3 characters")).toBeVisible();
  await expect(page.getByText("Use a lower-case column name such as tenant_id")).toBeVisible();
  await expect(page.locator("#sourceDatabaseId-error")).toHaveText("Choose the legacy database");
  await expect(page.getByText("At least 100 rows/s")).toBeVisible();
  await screenshot(page, "03-new-plan-errors");

  // Server-side: the column is well-formed but no table on the real legacy database has it.
  await page.getByLabel("Name").fill(planName);
  await page.getByLabel("Shard key column").fill("customer_id");
  await page.getByLabel("Backfill rate limit (rows/s)").fill("20000");
  await page.getByLabel("Legacy database (source)").selectOption({ index: 1 });
  await page.getByRole("button", { name: /Select all/ }).click();
  await page.getByRole("button", { name: "Create plan" }).click();
  await expect(page.getByText(/No table in "legacy" has a column named "customer_id"/)).toBeVisible();

  await page.getByLabel("Shard key column").fill("tenant_id");
  await page.getByRole("button", { name: "Create plan" }).click();
  await expect(page.getByRole("heading", { name: planName })).toBeVisible();
});

test("the plan shows its DATA-BALANCE timeline and advances through the state machine", async ({ page }) => {
  await signIn(page, "operator");
  await page.getByRole("link", { name: planName }).click();
  const timeline = page.getByRole("list", { name: "Migration phases" });
  await expect(timeline.getByRole("listitem")).toHaveCount(8);
  await expect(timeline.locator('[aria-current="step"]')).toContainText("Define the key");
  await expect(page.getByRole("button", { name: /Revert/ })).toBeDisabled();
  await expect(
    page.getByText("The plan is at its first phase: there is nothing to revert to."),
  ).toBeVisible();
  await screenshot(page, "04-plan-overview");

  await page.getByRole("button", { name: "Advance to “Application router”" }).click();
  const dialog = page.getByRole("dialog");
  await expect(dialog).toContainText(`Move plan “${planName}” from “Define the key” to “Application router”`);
  await dialog.getByRole("button", { name: "Advance to “Application router”" }).click();
  await expect(dialog.getByText(/Say why/)).toBeVisible();
  await dialog.getByLabel("Reason (recorded in the audit log)").fill("Key analysis reviewed with the team");
  await screenshot(page, "05-advance-dialog");
  await dialog.getByRole("button", { name: "Advance to “Application router”" }).click();
  await expect(dialog).toBeHidden();
  await expect(timeline.locator('[aria-current="step"]')).toContainText("Application router");
  await expect(page.getByText("Key analysis reviewed with the team")).toBeVisible();
});

test("settings refuse bad values beside the field, then save", async ({ page }) => {
  await signIn(page, "operator");
  await page.getByRole("link", { name: planName }).click();
  await page.getByRole("link", { name: "Settings" }).click();
  await page.getByLabel("Soak before clean-up (days)").fill("3");
  // "0, 100" would promote nobody first: refused beside the field, like a decreasing ladder.
  await page.getByLabel("Cohort steps (% of tenants)").fill("0, 100");
  await page.getByRole("button", { name: "Save settings" }).click();
  await expect(page.getByText("Each cohort step must be more than 0% (e.g. 1, 5, 25, 100)")).toBeVisible();
  await page.getByLabel("Cohort steps (% of tenants)").fill("5, 1, 100");
  await page.getByRole("button", { name: "Save settings" }).click();
  await expect(page.getByText("Soak at least 7 days before clean-up")).toBeVisible();
  await expect(
    page.getByText("Each cohort step must be larger than the one before (e.g. 1, 5, 25, 100)"),
  ).toBeVisible();
  await screenshot(page, "06-settings-errors");

  await page.getByLabel("Soak before clean-up (days)").fill("10");
  await page.getByLabel("Cohort steps (% of tenants)").fill("1, 10, 50, 100");
  // The load query runs as legacy's registered user: an operator sees it disabled, with the reason.
  await expect(page.getByLabel("Busy legacy: load query (optional)")).toBeDisabled();
  await expect(page.getByText(/Admins only: it runs as legacy's registered user/)).toBeVisible();
  await page.getByLabel("Busy legacy: load query above").fill("5");
  await page.getByLabel("Freeze budget (ms)").fill("1500");
  await page.getByLabel(/Reason/).fill("Shorter soak for a low-risk region");
  await page.getByRole("button", { name: "Save settings" }).click();
  await expect(page.getByText("Settings saved.")).toBeVisible();
  await page.getByRole("link", { name: "Overview" }).click();
  await expect(page.getByText("1% → 10% → 50% → 100%")).toBeVisible();
  await expect(page.getByText("1,500 ms")).toBeVisible();
});

test("the audit log lists every change, filters, exports and verifies its chain", async ({ page }) => {
  await signIn(page, "viewer");
  await page.getByRole("link", { name: "Audit log" }).click();
  // Client-side navigation: wait for the page, and match the filter labels exactly (the plans page
  // has a "Filter plans by name" field that a loose "Plan" would also match).
  await expect(page.getByRole("heading", { name: "Audit log" })).toBeVisible();
  await page.getByLabel("Plan", { exact: true }).selectOption({ label: planName });
  await page.getByRole("button", { name: "Apply" }).click();
  const rows = page.getByTestId("audit-row");
  await expect(rows).toHaveCount(3);
  await expect(rows.filter({ hasText: "plan.create" })).toHaveCount(1);
  await expect(rows.filter({ hasText: "plan.advance" })).toHaveCount(1);
  await expect(rows.filter({ hasText: "plan.settings.update" })).toHaveCount(1);

  await page.getByLabel("Action", { exact: true }).selectOption("plan.settings.update");
  await page.getByRole("button", { name: "Apply" }).click();
  await expect(rows).toHaveCount(1);
  await rows.first().getByRole("button", { name: "Before / after" }).click();
  await expect(page.getByText('"soakDays": 10')).toBeVisible();
  await expect(page.getByText('"soakDays": 14')).toBeVisible();

  const download = page.waitForEvent("download");
  await page.getByRole("link", { name: "Export CSV" }).click();
  const csv = await (await download)
    .path()
    .then((p) => import("node:fs").then((fs) => fs.readFileSync(p, "utf8")));
  expect(csv.split("\n")[0]).toContain("seq,at,actorEmail,role,action");
  expect(csv).toContain("plan.settings.update");
  expect(csv).not.toContain("plan.create");
  expect(csv.trim().split("\n")).toHaveLength(2);

  await page.getByRole("button", { name: "Verify chain" }).click();
  await expect(page.getByText(/Chain verified: all \d+ events match their hashes/)).toBeVisible();
  await screenshot(page, "07-audit");
});
