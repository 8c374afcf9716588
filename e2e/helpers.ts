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

/** A database of the e2e demo's embedded servers, as their superuser (for tampering tests only). */
export function demoPool(port: number, database: string): pg.Pool {
  const secrets = JSON.parse(fs.readFileSync(path.join(E2E.dataDir, "demo-secrets.json"), "utf8")) as {
    pgPassword: string;
  };
  return new pg.Pool({
    connectionString: `postgresql://postgres:${encodeURIComponent(secrets.pgPassword)}@127.0.0.1:${port}/${database}`,
    max: 1,
  });
}

export function controlPlanePool(): pg.Pool {
  return demoPool(E2E.pgPortBase, "shardshift");
}

/** Calls a tRPC procedure as the page's signed-in user. */
export async function trpc<T>(page: Page, path: string, input?: unknown): Promise<T> {
  const response =
    input === undefined
      ? await page.request.get(`/api/trpc/${path}`)
      : await page.request.post(`/api/trpc/${path}`, { data: { json: input } });
  const body = await response.json();
  if (!response.ok()) throw new Error(`${path}: ${JSON.stringify(body.error?.json?.message ?? body)}`);
  return body.result.data.json as T;
}

/**
 * Cancels every movement still going on the demo's shards and waits until each is cancelled: a spec
 * that failed (or timed out, when its own `finally` may not get to run) must not refuse the next
 * spec's start with "is moving data into the same shard".
 */
export async function cancelLeftoverMovements(page: Page) {
  const pool = controlPlanePool();
  try {
    const going = async () =>
      (await pool.query<{ plan_id: string }>("select plan_id from data_movement where status <> 'cancelled'"))
        .rows;
    for (const { plan_id } of await going()) await cancelMovement(page, plan_id);
    await expect.poll(async () => (await going()).length, { timeout: 60_000 }).toBe(0);
  } finally {
    await pool.end();
  }
}

/**
 * A plan at "Two-way CDC" on the demo's legacy database and every shard, set up through the API,
 * with no other movement left on those shards.
 */
export async function planAtTwoWayCdc(page: Page, name: string, settings: Record<string, unknown> = {}) {
  await cancelLeftoverMovements(page);
  const dbs = await trpc<{ id: string; kind: string }[]>(page, "databases.list");
  let plan = await trpc<{ id: string; version: number }>(page, "plans.create", {
    name,
    sourceDatabaseId: dbs.find((d) => d.kind === "legacy")?.id,
    shardDatabaseIds: dbs.filter((d) => d.kind === "shard").map((d) => d.id),
    shardKeyColumn: "tenant_id",
    settings: {
      backfillRowsPerSecond: 20_000,
      cdcLagThresholdMs: 60_000,
      gateSoakMinutes: 30,
      requireCleanParity: true,
      freezeBudgetMs: 2_000,
      soakDays: 14,
      cohortPercents: [1, 5, 25, 100],
      ...settings,
    },
  });
  for (const reason of ["key reviewed", "router deployed"]) {
    plan = await trpc(page, "plans.transition", {
      planId: plan.id,
      expectedVersion: plan.version,
      event: "advance",
      reason,
    });
  }
  return plan;
}

/**
 * Cancels a plan's movement, if it has one still going, so no spec leaves a slot streaming into the
 * shards the next spec uses (whatever happened in it: call it from a `finally`).
 */
export async function cancelMovement(page: Page, planId: string) {
  await handTenantsBackToLegacy(page, planId);
  await trpc(page, "movement.control", { planId, action: "cancel", reason: "test over" }).catch(() => {});
}

/**
 * A cancel is refused while a shard owns a tenant (its writes would be stranded there), so a spec
 * that cut tenants over or promoted a cohort hands them all back first — with the breaker, one
 * rollback — and waits until no shard owns any.
 */
async function handTenantsBackToLegacy(page: Page, planId: string) {
  const pool = controlPlanePool();
  try {
    const onShards = async () =>
      (
        await pool.query<{ n: number }>(
          "select count(*)::int as n from tenant_route where plan_id = $1 and owner_database_id is not null",
          [planId],
        )
      ).rows[0]?.n ?? 0;
    if ((await onShards()) === 0) return;
    await trpc(page, "breaker.trip", {
      planId,
      scope: { kind: "all" },
      reason: "test over: every tenant back to legacy",
    }).catch(() => {});
    await expect.poll(onShards, { timeout: 120_000, intervals: [1_000] }).toBe(0);
  } finally {
    await pool.end();
  }
}
