// Admins manage the databases: test a registered one, and see an unreachable URL refused clearly.
import { expect, test } from "@playwright/test";
import { screenshot, signIn } from "./helpers";

test("an admin tests connections and cannot register an unreachable database", async ({ page }) => {
  await signIn(page, "admin");
  await page.getByRole("link", { name: "Databases" }).click();
  const legacyRow = page.getByRole("row", { name: /Legacy \(source\)/ });
  await legacyRow.getByRole("button", { name: "Test connection" }).click();
  await expect(page.getByText(/Connected: PostgreSQL 18/)).toBeVisible();
  // No password anywhere on the page.
  await expect(page.locator("body")).not.toContainText("postgres:");

  await page.getByLabel("Name").fill("shard-9");
  await page.getByLabel("Connection URL").fill("mysql://nope");
  await page.getByRole("button", { name: "Register" }).click();
  await expect(page.getByText("The URL must start with postgresql://")).toBeVisible();

  await page.getByLabel("Connection URL").fill("postgresql://app:secret@127.0.0.1:1/app");
  await page.getByRole("button", { name: "Register" }).click();
  await expect(
    page.getByText(/Nothing is listening at 127\.0\.0\.1:1 .*Nothing was registered/),
  ).toBeVisible();
  await expect(page.getByRole("row", { name: /shard-9/ })).toHaveCount(0);
  await screenshot(page, "09-databases");

  await page.getByRole("link", { name: "Users" }).click();
  await expect(page.getByRole("cell", { name: "viewer@shardshift.local", exact: true })).toBeVisible();
  await screenshot(page, "10-users");
});
