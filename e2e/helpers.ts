import fs from "node:fs";
import path from "node:path";
import { expect, type Page } from "@playwright/test";
import pg from "pg";
import { E2E } from "../playwright.config";

export const ACCOUNTS = {
  admin: { email: "admin@shardshift.local", password: "shardshift-admin" },
  operator: { email: "operator@shardshift.local", password: "shardshift-operator" },
  viewer: { email: "viewer@shardshift.local", password: "shardshift-viewer" },
} as const;

export async function signIn(page: Page, role: keyof typeof ACCOUNTS) {
  await page.goto("/sign-in");
  await page.getByLabel("Email").fill(ACCOUNTS[role].email);
  await page.getByLabel("Password").fill(ACCOUNTS[role].password);
  await page.getByRole("button", { name: "Sign in" }).click();
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
