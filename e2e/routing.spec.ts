// The routing page's read side: a TPM searches a tenant and sees its owner (legacy until it is cut
// over), whether its writes are frozen, and the map version; an admin makes an API token that a
// router then uses to read the map over HTTP.
import { expect, test } from "@playwright/test";
import { planAtTwoWayCdc, screenshot, signIn } from "./helpers";

test("a tenant shows legacy as its owner, with the map version", async ({ page }) => {
  await signIn(page, "operator");
  const plan = await planAtTwoWayCdc(page, `Routing ${Date.now().toString(36)}`);
  await signIn(page, "viewer");
  await page.goto(`/plans/${plan.id}`);
  await page.getByRole("link", { name: "Routing" }).click();
  await expect(page.getByTestId("map-version")).toHaveText("0");
  await expect(page.getByTestId("fence-state")).toContainText("Not installed");
  await expect(page.getByTestId("stray-none")).toBeVisible();
  await expect(page.getByRole("button", { name: "Install fences" })).toBeDisabled();

  await page.getByLabel("Tenant key").fill("42");
  await page.getByRole("button", { name: "Show route" }).click();
  await expect(page.getByTestId("tenant-owner")).toHaveText(/legacy/);
  await expect(page.getByTestId("tenant-frozen")).toContainText("Accepted");
  await expect(page.getByTestId("tenant-map-version")).toContainText("0 · never changed");
  await expect(page.getByTestId("tenant-history-empty")).toBeVisible();
  await screenshot(page, "routing-tenant-on-legacy");
});

test("an admin's API token reads the routing map over HTTP, shown once", async ({ page, request }) => {
  await signIn(page, "operator");
  const plan = await planAtTwoWayCdc(page, `Routing token ${Date.now().toString(36)}`);
  await signIn(page, "admin");
  await page.goto(`/plans/${plan.id}/routing`);
  await page.getByLabel("Application").fill("checkout service");
  await page.getByRole("button", { name: "Create token" }).click();
  const token = (await page.getByTestId("new-token").textContent())?.trim() ?? "";
  expect(token).toMatch(/^sst_/);
  await expect(page.getByTestId("token-row").first()).toContainText("checkout service");
  await screenshot(page, "routing-api-token");

  const map = await request.get("/api/routing/map", { headers: { authorization: `Bearer ${token}` } });
  expect(map.status()).toBe(200);
  expect(map.headers().etag).toBe('"map-0"');
  expect(await map.json()).toMatchObject({ planId: plan.id, version: 0, tenants: [] });
  const refused = await request.get("/api/routing/map", { headers: { authorization: "Bearer sst_wrong" } });
  expect(refused.status()).toBe(401);
});
