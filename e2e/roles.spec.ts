// Roles are enforced by the API, not only by the UI: a viewer sees disabled actions with the
// reason, and the same call made directly is FORBIDDEN and changes nothing.
import { expect, test } from "@playwright/test";
import { screenshot, signIn } from "./helpers";

test("a viewer cannot create or edit: no enabled button, and the API refuses", async ({ page }) => {
  await signIn(page, "viewer");
  const newPlan = page.getByRole("button", { name: "New plan" });
  await expect(newPlan).toBeDisabled();
  await expect(page.getByText("Needs the Operator role; you are signed in as Viewer.")).toBeVisible();

  const before = await page.request.get(
    `/api/trpc/plans.list?input=${encodeURIComponent(JSON.stringify({ json: { includeArchived: true } }))}`,
  );
  const plansBefore = (await before.json()).result.data.json as { id: string; version: number }[];

  const databases = await page.request.get("/api/trpc/databases.list");
  const dbs = (await databases.json()).result.data.json as { id: string; kind: string }[];
  const create = await page.request.post("/api/trpc/plans.create", {
    data: {
      json: {
        name: "viewer was here",
        sourceDatabaseId: dbs.find((d) => d.kind === "legacy")?.id,
        shardDatabaseIds: dbs.filter((d) => d.kind === "shard").map((d) => d.id),
        shardKeyColumn: "tenant_id",
      },
    },
  });
  expect(create.status()).toBe(403);
  expect((await create.json()).error.json.data.code).toBe("FORBIDDEN");

  const after = await page.request.get(
    `/api/trpc/plans.list?input=${encodeURIComponent(JSON.stringify({ json: { includeArchived: true } }))}`,
  );
  expect((await after.json()).result.data.json).toHaveLength(plansBefore.length);

  if (plansBefore[0]) {
    await page.goto(`/plans/${plansBefore[0].id}/settings`);
    await expect(page.getByRole("button", { name: "Save settings" })).toBeDisabled();
    await screenshot(page, "08-viewer-settings");
  }
});

test("signed out, pages redirect to sign-in and the API answers 401", async ({ page }) => {
  await page.goto("/audit");
  await expect(page).toHaveURL(/\/sign-in/);
  const response = await page.request.get("/api/trpc/plans.list");
  expect(response.status()).toBe(401);
});
