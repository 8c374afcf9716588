import fs from "node:fs";
import path from "node:path";
import { type BrowserContext, expect, type Page } from "@playwright/test";
import pg from "pg";
import { E2E } from "../playwright.config";

export const ACCOUNTS = {
  admin: { email: "admin@shardshift.local", password: "shardshift-admin" },
  operator: { email: "operator@shardshift.local", password: "shardshift-operator" },
  viewer: { email: "viewer@shardshift.local", password: "shardshift-viewer" },
} as const;

export type Role = keyof typeof ACCOUNTS;

export const storageStatePath = (role: Role) => path.join("test-results", ".auth", `${role}.json`);

/** Signs in through the real form (used once per role by auth.setup.ts). */
export async function signInWithForm(page: Page, role: Role) {
  await page.goto("/sign-in");
  await page.getByLabel("Email").fill(ACCOUNTS[role].email);
  await page.getByLabel("Password").fill(ACCOUNTS[role].password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByTestId("signed-in-as")).toContainText(ACCOUNTS[role].email);
}

/**
 * Reuses the session that auth.setup.ts made for this role: sign-in is rate limited (as it should
 * be), so tests do not sign in through the form again and again.
 */
export async function signIn(page: Page, role: Role) {
  const state = JSON.parse(fs.readFileSync(storageStatePath(role), "utf8")) as {
    cookies: Parameters<BrowserContext["addCookies"]>[0];
  };
  await page.context().clearCookies();
  await page.context().addCookies(state.cookies);
  await page.goto("/");
  await expect(page.getByTestId("signed-in-as")).toContainText(ACCOUNTS[role].email);
}

/** Screenshots we look at ourselves before calling a page done. */
export async function screenshot(page: Page, name: string) {
  await page.screenshot({ path: path.join("test-results", "screens", `${name}.png`), fullPage: true });
}

/** The e2e demo's control-plane database, as its superuser (for tampering tests only). */
export function controlPlanePool(): pg.Pool {
  const secrets = JSON.parse(fs.readFileSync(path.join(E2E.dataDir, "demo-secrets.json"), "utf8")) as {
    pgPassword: string;
  };
  return new pg.Pool({
    connectionString: `postgresql://postgres:${encodeURIComponent(secrets.pgPassword)}@127.0.0.1:${E2E.pgPortBase}/shardshift`,
    max: 1,
  });
}
