// Screenshots of the pages whose lists moved onto the shared DataTable, taken after the other specs
// have left plans behind, for a person to look at (alignment, empty states, overflow). Also checks
// that a sortable header sorts and that the audit log's order goes to the server.
import fs from "node:fs";
import { expect, test } from "@playwright/test";
import { planAtTwoWayCdc, signIn } from "./helpers";

const DIR = process.env.TABLE_SHOTS_DIR ?? "test-results/table-shots";

test("the listing pages, on the shared table", async ({ page }) => {
  test.setTimeout(180_000);
  fs.mkdirSync(DIR, { recursive: true });
  const shot = (name: string) => page.screenshot({ path: `${DIR}/${name}.png`, fullPage: true });
  await signIn(page, "admin");
  await page.goto("/users");
  await expect(page.getByRole("table", { name: "Accounts" })).toBeVisible();
  await page.getByRole("button", { name: "Email" }).click();
  await expect(page.getByRole("columnheader", { name: /Email/ })).toHaveAttribute("aria-sort", "ascending");
  await shot("users");
  await page.getByLabel("Filter the accounts").fill("viewer");
  await expect(page.getByRole("table", { name: "Accounts" }).locator("tbody tr")).toHaveCount(1);
  await page.goto("/databases");
  await expect(page.getByRole("row", { name: /Legacy \(source\)/ })).toBeVisible();
  await shot("databases");
  await page.goto("/audit");
  const first = await page.getByTestId("audit-row").first().locator("td").first().textContent();
  await page.getByRole("button", { name: "#" }).click();
  await expect(page.getByText("Oldest first.")).toBeVisible();
  await expect(page.getByTestId("audit-row").first().locator("td").first()).toHaveText("1");
  expect(Number(first)).toBeGreaterThan(1);
  await shot("audit");
  const listed = await page.request.get(
    `/api/trpc/plans.list?input=${encodeURIComponent(JSON.stringify({ json: { includeArchived: false } }))}`,
  );
  let plans = ((await listed.json()).result.data.json ?? []) as { id: string; name: string }[];
  // Run alone, the demo has no plan yet: one at two-way CDC shows the empty states.
  if (plans.length === 0) plans = [{ ...(await planAtTwoWayCdc(page, "Table shots")), name: "Table shots" }];
  for (const plan of plans.slice(0, 3)) {
    const slug = plan.name.replace(/[^a-z0-9]+/gi, "-").toLowerCase();
    for (const tab of ["backfill", "routing", "parity", "cohorts"]) {
      await page.goto(`/plans/${plan.id}/${tab}`);
      await expect(page.getByRole("heading", { level: 1 })).toBeVisible();
      // A tab shows its tables once its queries answered (a tab with none still gets its shot).
      await page
        .locator("table")
        .first()
        .waitFor({ timeout: 10_000 })
        .catch(() => {});
      await shot(`${slug}-${tab}`);
    }
  }
});
