// A TPM sees parity clean, an engineer tampers with a shard behind Shardshift's back, a check
// reports the rows with both values, and an operator repairs them from legacy.
import { expect, test } from "@playwright/test";
import { E2E } from "../playwright.config";
import { hashPlacement } from "../server/engine/router/placement";
import { cancelMovement, demoPool, planAtTwoWayCdc, screenshot, signIn, trpc } from "./helpers";

test("drift is charted, shown with both values, and repaired", async ({ page }) => {
  test.setTimeout(180_000);
  await signIn(page, "operator");
  const plan = await planAtTwoWayCdc(page, `Parity ${Date.now().toString(36)}`);
  // The shards may hold rows from another spec's cancelled movement: empty them first.
  await trpc(page, "movement.start", { planId: plan.id, reason: "copy for parity", resetShards: true });
  try {
    await page.goto(`/plans/${plan.id}/backfill`);
    await expect(page.getByTestId("stat-eta")).toHaveText("Done", { timeout: 90_000 });

    await page.getByRole("link", { name: "Parity" }).click();
    await page.getByRole("button", { name: "Run full check now" }).click();
    await expect(
      page
        .getByRole("heading", { name: "Parity", exact: true })
        .locator("..")
        .locator("..")
        .getByText("Clean"),
    ).toBeVisible({
      timeout: 60_000,
    });

    // Tamper with shard-1 (ordinal 0) directly: one changed column in the largest table.
    const shard = demoPool(E2E.pgPortBase + 2, "app");
    const placement = hashPlacement(2);
    let victimTenant = "";
    try {
      const { rows } = await shard.query<{ tenant_id: string; id: string }>(
        "select tenant_id::text, id::text from events order by tenant_id, id limit 100",
      );
      const victim = rows.find((r) => placement.shardFor(r.tenant_id) === 0);
      if (!victim) throw new Error("no events row on shard-1");
      victimTenant = victim.tenant_id;
      // Past the fence, as a superuser fixing data by hand would be: once a cutover installed the
      // plan's fences (cutover.spec runs first), a shard refuses application writes to tenants it
      // does not own, and this drift must reach the shard to be found.
      const client = await shard.connect();
      try {
        await client.query("begin; set local session_replication_role = replica");
        await client.query("update events set kind = 'tampered-by-hand' where tenant_id = $1 and id = $2", [
          victim.tenant_id,
          victim.id,
        ]);
        await client.query("commit");
      } finally {
        client.release();
      }
    } finally {
      await shard.end();
    }

    await page.getByRole("button", { name: "Run full check now" }).click();
    const mismatch = page.getByTestId("mismatch-row");
    await expect(mismatch).toHaveCount(1, { timeout: 60_000 });
    await expect(mismatch).toContainText("changed: kind");
    await expect(page.getByTestId("shard-kind")).toHaveText("tampered-by-hand");
    await expect(page.getByTestId("legacy-kind")).not.toHaveText("tampered-by-hand");
    await expect(page.getByLabel("Drift by table")).toBeVisible();
    await expect(page.getByText(/Drift: 1 row/).first()).toBeVisible();
    // The tenant's own view, as a cohort gate reads it: drift in events only.
    await page.getByLabel("Tenant key").fill(victimTenant);
    await page.getByRole("button", { name: "Show", exact: true }).click();
    const tenantTables = page.getByTestId("tenant-parity-table");
    await expect(tenantTables.filter({ hasText: "public.events" })).toContainText("Drift");
    await expect(tenantTables.filter({ hasText: "public.tasks" })).toContainText("Clean");
    await screenshot(page, "14-parity-drift");

    await mismatch.getByRole("button", { name: "Repair" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByLabel("Reason (recorded in the audit log)").fill("Undo a manual edit on shard-1");
    await dialog.getByRole("button", { name: "Repair row" }).click();
    await expect(mismatch).toHaveCount(0);
    await page.getByRole("button", { name: "Run full check now" }).click();
    await expect(page.getByText("Clean").first()).toBeVisible({ timeout: 60_000 });
    await expect(tenantTables.filter({ hasText: "public.events" })).toContainText("Clean");
    await screenshot(page, "15-parity-clean");
  } finally {
    // Leave nothing streaming for the other specs, whatever happened.
    await cancelMovement(page, plan.id);
  }
});
