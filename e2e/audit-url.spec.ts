// A manager filters the audit log, reloads, and shares the link: the filter lives in the URL.
// Targets show the plan's name, with its id on hover.
import { expect, test } from "@playwright/test";
import { planAtTwoWayCdc, screenshot, signIn } from "./helpers";

test("an audit filter survives a reload from its URL", async ({ page, browser }) => {
  await signIn(page, "operator");
  const name = `Audit URL ${Date.now().toString(36)}`;
  const plan = await planAtTwoWayCdc(page, name);

  await page.goto("/audit");
  await expect(page.getByRole("heading", { name: "Audit log" })).toBeVisible();
  await page.getByLabel("Plan", { exact: true }).selectOption({ label: name });
  await page.getByLabel("Action", { exact: true }).selectOption("plan.advance");
  await page.getByRole("button", { name: "Apply" }).click();
  await expect(page).toHaveURL(new RegExp(`planId=${plan.id}`));
  await expect(page).toHaveURL(/action=plan\.advance/);
  const rows = page.getByTestId("audit-row");
  await expect(rows).toHaveCount(2);
  // The target by name, its id on hover.
  const target = rows.first().getByTestId("audit-target");
  await expect(target).toContainText(name);
  await expect(target).toHaveAttribute("title", `plan id ${plan.id}`);

  await page.reload();
  await expect(rows).toHaveCount(2);
  await expect(page.getByLabel("Action", { exact: true })).toHaveValue("plan.advance");
  await expect(page.getByLabel("Plan", { exact: true })).toHaveValue(plan.id);
  await screenshot(page, "24-audit-filter-from-url");

  // The same link opened by someone else (a viewer, in a fresh browser context).
  const shared = page.url();
  const other = await browser.newPage();
  await signIn(other, "viewer");
  await other.goto(shared);
  await expect(other.getByTestId("audit-row")).toHaveCount(2);
  await expect(other.getByLabel("Action", { exact: true })).toHaveValue("plan.advance");
  // Clearing the filter clears the URL.
  await other.getByRole("button", { name: "Clear" }).click();
  await expect(other).toHaveURL(/\/audit$/);
  await expect(other.getByTestId("audit-row").first()).toBeVisible();
  expect(await other.getByTestId("audit-row").count()).toBeGreaterThan(2);
  await other.close();

  // A link with a broken filter says what is wrong instead of showing the whole log as filtered.
  await page.goto("/audit?planId=not-a-plan");
  await expect(page.getByText("Not a plan id")).toBeVisible();
  await expect(rows).toHaveCount(0);
});
