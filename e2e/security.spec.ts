// Security in the real, built app in Chromium: every page carries a CSP (with a nonce Next.js's own
// scripts use, so the app still works) and refuses framing; a foreign-origin state change is
// refused; an admin disables a person from the Users page and their session ends at once.
import { expect, type Page, test } from "@playwright/test";
import { screenshot, signIn, trpc } from "./helpers";

function collectCspViolations(page: Page): string[] {
  const violations: string[] = [];
  page.on("console", (message) => {
    if (/Content Security Policy|Refused to (execute|load|apply)/i.test(message.text())) {
      violations.push(message.text());
    }
  });
  return violations;
}

test("pages carry a nonce CSP and refuse framing, and still work in Chromium", async ({ page }) => {
  const violations = collectCspViolations(page);
  const response = await page.request.get("/sign-in");
  const csp = response.headers()["content-security-policy"] ?? "";
  expect(csp).toContain("frame-ancestors 'none'");
  expect(csp).toMatch(/script-src 'self' 'nonce-[A-Za-z0-9+/=]+' 'strict-dynamic'/);
  expect(csp).not.toContain("'unsafe-eval'");
  expect(response.headers()["x-frame-options"]).toBe("DENY");
  const api = await page.request.get("/api/trpc/users.me");
  expect(api.headers()["x-frame-options"]).toBe("DENY");

  await signIn(page, "admin");
  for (const path of ["/", "/users", "/audit", "/databases"]) {
    await page.goto(path);
    await expect(page.getByTestId("signed-in-as")).toBeVisible();
  }
  // Client-side navigation works too (the app's scripts ran under the policy).
  await page.getByRole("link", { name: "Users" }).click();
  await expect(page.getByRole("heading", { name: "Users and roles" })).toBeVisible();
  expect(violations).toEqual([]);
});

test("a state change from another origin is refused with 403 and changes nothing", async ({ page }) => {
  await signIn(page, "admin");
  const users = await trpc<{ id: string; email: string; disabledAt: string | null }[]>(page, "users.list");
  const viewer = users.find((u) => u.email === "viewer@shardshift.local");
  const forged = await page.request.post("/api/trpc/users.disable", {
    headers: { origin: "https://evil.example", "sec-fetch-site": "cross-site" },
    data: { json: { userId: viewer?.id, reason: "forged" } },
  });
  expect(forged.status()).toBe(403);
  expect((await forged.json()).error.message).toMatch(/only from the Shardshift dashboard itself/);
  const after = await trpc<{ id: string; disabledAt: string | null }[]>(page, "users.list");
  expect(after.find((u) => u.id === viewer?.id)?.disabledAt).toBeNull();
});

test("an admin disables a person from the Users page: their session ends and sign-in says why", async ({
  page,
  browser,
}) => {
  await signIn(page, "admin");
  const email = `temp-${Date.now()}@shardshift.local`;
  const password = "temporary-password-1";
  await trpc(page, "users.create", { name: "Temp Person", email, role: "operator", password });

  const theirs = await browser.newContext();
  const them = await theirs.newPage();
  await them.goto("/sign-in");
  await them.getByLabel("Email").fill(email);
  await them.getByLabel("Password").fill(password);
  await them.getByRole("button", { name: "Sign in" }).click();
  await expect(them.getByTestId("signed-in-as")).toContainText(email);

  await page.goto("/users");
  const row = page.getByRole("row").filter({ hasText: email });
  await row.getByRole("button", { name: "Disable" }).click();
  await expect(page.getByRole("dialog")).toContainText("1 active session");
  await page.getByLabel("Reason (recorded in the audit log)").fill("left the company");
  await page.getByRole("button", { name: "Disable and sign out" }).click();
  await expect(row.getByText("Disabled")).toBeVisible();
  await screenshot(page, "security-users-disabled");

  await them.reload();
  await expect(them).toHaveURL(/\/sign-in/);
  await them.getByLabel("Email").fill(email);
  await them.getByLabel("Password").fill(password);
  await them.getByRole("button", { name: "Sign in" }).click();
  await expect(them.getByText(/This account is disabled/)).toBeVisible();
  await screenshot(them, "security-sign-in-disabled");
  await theirs.close();
});

test("a viewer sees the lock-out actions disabled with the reason, and their own account card", async ({
  page,
}) => {
  await signIn(page, "viewer");
  await page.goto("/users");
  await expect(page.getByRole("button", { name: "Disable a person" })).toBeDisabled();
  await expect(page.getByRole("heading", { name: "Change your password" })).toBeVisible();
  await expect(page.getByRole("button", { name: "Sign out everywhere…" })).toBeEnabled();
  await screenshot(page, "security-users-viewer");
});
