// The rollback breaker from the plan header: an operator cuts a few tenants over, trips the breaker
// for the shard holding them (dry run in words, a reason), follows the rollback live to "rolled
// back", finds the tenants back on legacy on the routing page, the breaker tripped in the header,
// the trip on the Breaker page and its audit entries on the audit page. A viewer sees the control
// disabled with the role needed, and the API refuses the viewer's trip (FORBIDDEN). An admin
// re-arms at the end, so no later spec starts tripped.
import { expect, type Page, test } from "@playwright/test";
import { cancelMovement, controlPlanePool, planAtTwoWayCdc, screenshot, signIn, trpc } from "./helpers";

const BUDGET_MS = 10_000;
const TENANTS = ["11", "12", "13"];

const shot = (page: Page, name: string) => screenshot(page, `breaker-${name}`);

/** Copies the plan's data and waits until the backfill is done and forward CDC measures its lag. */
async function movingPlan(page: Page, name: string) {
  // A 10 s budget: the machine is shared; this spec is about what the operator sees.
  const plan = await planAtTwoWayCdc(page, name, { freezeBudgetMs: BUDGET_MS });
  await trpc(page, "movement.start", { planId: plan.id, reason: "copy for the breaker", resetShards: true });
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
  return plan;
}

async function ownerOf(pool: ReturnType<typeof controlPlanePool>, planId: string, tenant: string) {
  const { rows } = await pool.query<{ name: string | null }>(
    `select d.name from tenant_route r left join database d on d.id = r.owner_database_id
      where r.plan_id = $1 and r.tenant_key = $2`,
    [planId, tenant],
  );
  return rows[0]?.name ?? "legacy";
}

/** Cuts a tenant over through the API (set-up, not what is tested), asking again after an abort. */
async function cutOver(
  page: Page,
  pool: ReturnType<typeof controlPlanePool>,
  planId: string,
  tenant: string,
) {
  for (let attempt = 1; attempt <= 3; attempt++) {
    await trpc(page, "routing.requestCutover", {
      planId,
      tenantKey: tenant,
      reason: "set-up",
      budgetMs: BUDGET_MS,
    });
    const ended = async () =>
      (
        await pool.query<{ status: string }>(
          "select status from tenant_cutover where plan_id = $1 and tenant_key = $2 order by created_at desc limit 1",
          [planId, tenant],
        )
      ).rows[0]?.status ?? "none";
    await expect.poll(ended, { timeout: 120_000, intervals: [500] }).toMatch(/^(done|aborted|failed)$/);
    if ((await ended()) === "done") return;
  }
  throw new Error(`tenant ${tenant} did not cut over`);
}

test("an operator trips the breaker for a shard and its tenants are back on legacy; a viewer cannot", async ({
  page,
}) => {
  test.setTimeout(600_000);
  await signIn(page, "operator");
  const plan = await movingPlan(page, `Breaker ${Date.now().toString(36)}`);
  const pool = controlPlanePool();
  try {
    for (const tenant of TENANTS) await cutOver(page, pool, plan.id, tenant);
    // The shard holding most of them: its tenants are what the trip moves.
    const owners = new Map<string, string[]>();
    for (const tenant of TENANTS) {
      const owner = await ownerOf(pool, plan.id, tenant);
      owners.set(owner, [...(owners.get(owner) ?? []), tenant]);
    }
    const [shard, moved] = [...owners].sort((a, b) => b[1].length - a[1].length)[0] as [string, string[]];
    expect(shard).toMatch(/^shard-\d$/);

    // A viewer: the control is there, disabled, and says which role it needs; the API refuses.
    await signIn(page, "viewer");
    await page.goto(`/plans/${plan.id}`);
    const viewerButton = page.getByTestId("breaker-trip-button");
    await expect(viewerButton).toBeDisabled();
    await expect(viewerButton).toHaveAttribute(
      "title",
      "Needs the Operator role; you are signed in as Viewer.",
    );
    const refused = await page.request.post("/api/trpc/breaker.trip", {
      data: { json: { planId: plan.id, scope: { kind: "all" }, reason: "a viewer tries" } },
    });
    expect(refused.status()).toBe(403);
    expect((await refused.json()).error.json.data.code).toBe("FORBIDDEN");
    await shot(page, "viewer-header");
    expect(await ownerOf(pool, plan.id, moved[0] as string)).toBe(shard);

    // The operator trips it from the header, for that shard.
    await signIn(page, "operator");
    await page.goto(`/plans/${plan.id}/routing`);
    await expect(page.getByTestId("breaker-state")).toContainText("Armed");
    await page.getByTestId("breaker-trip-button").click();
    const dialog = page.getByTestId("breaker-dialog");
    await expect(dialog).toBeVisible();
    await dialog.getByLabel("Shard", { exact: true }).selectOption({ label: shard });
    await expect(dialog.getByTestId("breaker-preview-summary")).toHaveText(
      `Roll back ${moved.length} tenant${moved.length === 1 ? "" : "s"} on ${shard} to legacy; their writes pause for up to ${BUDGET_MS / 1000} s.`,
      { timeout: 30_000 },
    );
    await expect(dialog.getByTestId("breaker-preview-count")).toHaveText(String(moved.length));
    await expect(dialog.getByTestId("breaker-blockers")).toHaveCount(0);
    await shot(page, "dialog");
    await dialog
      .getByLabel("Reason (recorded in the audit log)")
      .fill("errors on the shard after the cutover");
    await dialog.getByRole("button", { name: /^Trip: roll back \d+ tenants?$/ }).click();
    await expect(dialog.getByTestId("breaker-follow")).toBeVisible();
    await expect(dialog.getByTestId("breaker-outcome")).toBeVisible({ timeout: 120_000 });
    await expect(dialog.getByTestId("breaker-follow-status")).toContainText("Rolled back");
    await expect(dialog.getByTestId("breaker-outcome")).toContainText(
      `${moved.length} tenant${moved.length === 1 ? "" : "s"} back on legacy`,
    );
    await shot(page, "dialog-outcome");
    await dialog.getByRole("button", { name: "Close" }).click();
    // The header's badge: tripped ("Tripped · rolled back" once its figures catch up).
    await expect(page.getByTestId("breaker-state")).toContainText("Tripped", { timeout: 30_000 });

    // The routing page: each of them is on legacy again.
    for (const tenant of moved) {
      await page.getByLabel("Tenant key").fill(tenant);
      await page.getByRole("button", { name: "Show route" }).click();
      await expect(page.getByTestId("tenant-owner")).toHaveText(/legacy/);
    }
    await shot(page, "header-tripped");

    // The Breaker page: state, the rules, the trip in the history.
    const tabs = page.getByRole("navigation", { name: "Plan" });
    await tabs.getByRole("link", { name: "Breaker", exact: true }).click();
    await expect(page.getByTestId("breaker-page-state")).toContainText(
      "errors on the shard after the cutover",
    );
    await expect(page.getByTestId("trip-rule-row").first()).toBeVisible();
    const row = page.getByTestId("breaker-trip-row").first();
    await expect(row).toContainText("operator@shardshift.local");
    await expect(row).toContainText(`every tenant on ${shard}`);
    await expect(row).toContainText(`${moved.length} of ${moved.length}`);
    await shot(page, "breaker-page");

    // The audit page: the trip and the rollback's end, with the reason.
    await tabs.getByRole("link", { name: "Audit", exact: true }).click();
    await expect(page.getByRole("cell", { name: "breaker.trip", exact: true }).first()).toBeVisible({
      timeout: 30_000,
    });
    await expect(
      page.getByRole("cell", { name: "breaker.rollback.finished", exact: true }).first(),
    ).toBeVisible();
    await shot(page, "audit");

    // An operator cannot re-arm; an admin does, so the next spec starts armed.
    await page.goto(`/plans/${plan.id}/breaker`);
    await expect(page.getByTestId("breaker-rearm-button").first()).toBeDisabled();
    await signIn(page, "admin");
    await page.goto(`/plans/${plan.id}/breaker`);
    await page.getByTestId("breaker-rearm-button").first().click();
    await page.getByLabel("Reason (recorded in the audit log)").fill("shard fixed, promoting again");
    await page.getByRole("button", { name: "Re-arm the breaker" }).click();
    await expect(page.getByTestId("breaker-state")).toContainText("Armed", { timeout: 30_000 });
    await expect(page.getByTestId("breaker-trip-row").first()).toContainText(
      "Re-armed by admin@shardshift.local",
    );
    await shot(page, "breaker-page-rearmed");
  } finally {
    await pool.end();
    await cancelMovement(page, plan.id);
  }
});
