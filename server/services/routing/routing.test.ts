// The routing map end to end on real servers: versions and history written with their audit
// events, served over real HTTP with a plan-scoped token (ETag, long-poll, deltas), and followed by
// the router SDK, which sends each tenant's statements to its owner, waits out freezes within the
// budget and never commits a transaction on a database that stopped being the owner.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRouter, httpMapSource, type Router, StaleRouteError, TenantFrozenError } from "../../../sdk";
import { routingMapEtag, type WireRoutingMap } from "../../../sdk/map-types";
import { db } from "../../db";
import { writeRoutingChangeAtomic } from "../../engine/routing/atomic-change";
import { AppError } from "../../errors";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { startRoutingHttp } from "../../testing/routing-http";
import { systemActor } from "../actor";
import { verifyAuditChain } from "../audit/audit-log";
import { createApiToken, revokeApiToken } from "./api-tokens";
import { closeRoutingMapNotifier } from "./map-notifier";
import { changeTenantRoutes, draftRoutingAuditAs, lookupTenantRoute } from "./routing";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
let http: Awaited<ReturnType<typeof startRoutingHttp>>;
let planId: string;
let shardId: string;
let token: string;
const routers: Router[] = [];
const actor = systemActor("routing-test", "engineer@test");

const ITEMS_SQL = "create table items (tenant_id bigint not null, note text not null)";

beforeAll(async () => {
  control = await useControlPlane("routing_control");
  legacy = await createTestDatabase("routing_legacy");
  shard = await createTestDatabase("routing_shard");
  await legacy.pool.query(ITEMS_SQL);
  await shard.pool.query(ITEMS_SQL);
  const plan = await planAtTwoWayCdc(actor, "routing", legacy.url, [shard.url]);
  planId = plan.id;
  shardId = (await db().planShard.findFirstOrThrow({ where: { planId } })).databaseId;
  token = (await createApiToken(actor, { planId, name: "routing test app" })).token;
  http = await startRoutingHttp();
});

afterAll(async () => {
  for (const router of routers) await router.close();
  await http?.close();
  await closeRoutingMapNotifier();
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

async function get(query: string, headers: Record<string, string> = {}, bearer = token) {
  return fetch(`${http.url}${query}`, { headers: { authorization: `Bearer ${bearer}`, ...headers } });
}

async function router(options: { freezeBudgetMs?: number } = {}): Promise<Router> {
  const r = await createRouter({
    databases: { legacy: legacy.pool, "shard-0": shard.pool },
    map: httpMapSource({ url: http.url, token, waitSeconds: 20 }),
    ...options,
  });
  routers.push(r);
  return r;
}

async function whereIs(note: string): Promise<string[]> {
  const found: string[] = [];
  for (const [name, pool] of [
    ["legacy", legacy.pool],
    ["shard-0", shard.pool],
  ] as [string, pg.Pool][]) {
    const { rows } = await pool.query("select 1 from items where note = $1", [note]);
    if (rows.length > 0) found.push(name);
  }
  return found;
}

describe("routing map", () => {
  it("versions every change by one, with its history and audit event; a no-op takes no version", async () => {
    const first = await changeTenantRoutes(actor, {
      planId,
      changes: [{ tenantKey: "100", frozen: true }],
      reason: "freeze for the test",
    });
    const second = await changeTenantRoutes(actor, {
      planId,
      changes: [
        { tenantKey: "100", owner: shardId, frozen: false },
        { tenantKey: "101", owner: shardId },
      ],
      reason: "flip two tenants in one version",
    });
    expect([first.version, second.version]).toEqual([1, 2]);
    const noop = await changeTenantRoutes(actor, {
      planId,
      changes: [{ tenantKey: "101", owner: shardId }],
      reason: "nothing changes",
    });
    expect(noop).toMatchObject({ version: 2, changed: 0 });

    const view = await lookupTenantRoute(planId, "100");
    expect(view).toMatchObject({ mapVersion: 2, routeVersion: 2, frozen: false, owner: { name: "shard-0" } });
    expect(view.history.map((h) => [h.version, h.from.owner, h.to.owner, h.to.frozen, h.actorEmail])).toEqual(
      [
        [2, "legacy", "shard-0", false, "engineer@test"],
        [1, "legacy", "legacy", true, "engineer@test"],
      ],
    );
    expect(await lookupTenantRoute(planId, "999")).toMatchObject({
      owner: { name: "legacy" },
      routeVersion: null,
    });
    const audited = await db().auditEvent.findMany({ where: { action: "routing.change", planId } });
    expect(audited.map((a) => (a.after as { version: number }).version)).toEqual([1, 2]);
    expect((await verifyAuditChain(db())).ok).toBe(true);
  });

  it("refuses an owner outside the plan and a decision taken on a stale version, changing nothing", async () => {
    const before = await db().routingMap.findUniqueOrThrow({ where: { planId } });
    await expect(
      changeTenantRoutes(actor, {
        planId,
        changes: [{ tenantKey: "5", owner: "00000000-0000-4000-8000-000000000000" }],
        reason: "a database that is not a shard of the plan",
      }),
    ).rejects.toThrow(/not a shard of this plan/);
    const stale = await changeTenantRoutes(actor, {
      planId,
      changes: [{ tenantKey: "5", frozen: true }],
      expectedVersion: 1,
      reason: "decided on version 1",
    }).catch((e: AppError) => e);
    expect(stale).toBeInstanceOf(AppError);
    expect((stale as AppError).code).toBe("CONFLICT");
    expect((await db().routingMap.findUniqueOrThrow({ where: { planId } })).version).toBe(before.version);
  });
});

describe("routing map over HTTP", () => {
  it("needs a valid token of the plan, and says how to get one", async () => {
    const none = await fetch(http.url);
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: string }).error).toMatch(/Authorization: Bearer/);
    expect((await get("", {}, "sst_not-a-token")).status).toBe(401);
    const made = await createApiToken(actor, { planId, name: "to revoke" });
    expect((await get("", {}, made.token)).status).toBe(200);
    await revokeApiToken(actor, { tokenId: made.apiToken.id, reason: "leaked (test)" });
    expect((await get("", {}, made.token)).status).toBe(401);
    expect((await get("?since=-1")).status).toBe(400);
    expect((await get("?wait=600")).status).toBe(400);
  });

  it("serves the whole map or a delta with an ETag, 304 when unchanged, and wakes a long-poll on a change", async () => {
    const whole = await get("");
    const map = (await whole.json()) as WireRoutingMap;
    expect(whole.headers.get("etag")).toBe(routingMapEtag(map.version));
    expect(map).toMatchObject({ delta: false, legacy: { name: "legacy" } });
    expect(map.tenants.map((t) => [t.tenant, t.owner])).toEqual([
      ["100", "shard-0"],
      ["101", "shard-0"],
    ]);
    expect((await get("", { "if-none-match": routingMapEtag(map.version) })).status).toBe(304);

    const polling = get(`?since=${map.version}&wait=30`, { "if-none-match": routingMapEtag(map.version) });
    // Give the request time to reach its wait; the answer must come from the change either way.
    await new Promise((r) => setTimeout(r, 200));
    const change = await changeTenantRoutes(actor, {
      planId,
      changes: [{ tenantKey: "102", frozen: true }],
      reason: "wake the poll",
    });
    const woken = await polling;
    expect(woken.status).toBe(200);
    const delta = (await woken.json()) as WireRoutingMap;
    expect(delta).toMatchObject({ delta: true, since: map.version, version: change.version });
    expect(delta.tenants).toEqual([
      { tenant: "102", owner: "legacy", ownerId: map.legacy.id, frozen: true, version: change.version },
    ]);
  });
});

describe("router SDK", () => {
  it("sends each tenant's statements to its owner and follows a flip", async () => {
    const r = await router();
    await r.forTenant(200).query("insert into items values ($1, 'before flip')", [200]);
    expect(await whereIs("before flip")).toEqual(["legacy"]);
    const flip = await changeTenantRoutes(actor, {
      planId,
      changes: [{ tenantKey: "200", owner: shardId }],
      reason: "flip 200",
    });
    await r.waitForVersion(flip.version);
    expect(r.route(200)).toMatchObject({ owner: "shard-0", frozen: false, version: flip.version });
    await r.forTenant(200).query("insert into items values ($1, 'after flip')", [200]);
    expect(await whereIs("after flip")).toEqual(["shard-0"]);
    // Tenants the map never mentions stay on legacy.
    await r.forTenant("201").transaction(async (tx) => {
      expect(tx.owner).toBe("legacy");
      await tx.query("insert into items values (201, 'in a transaction')");
    });
    expect(await whereIs("in a transaction")).toEqual(["legacy"]);
  });

  it("holds a frozen tenant's write until the freeze lifts, and fails it retryably after the budget", async () => {
    const r = await router();
    const freeze = await changeTenantRoutes(actor, {
      planId,
      changes: [{ tenantKey: "300", frozen: true }],
      reason: "freeze 300",
    });
    await r.waitForVersion(freeze.version);
    const held = r.forTenant(300).query("insert into items values (300, 'waited for the freeze')");
    await changeTenantRoutes(actor, {
      planId,
      changes: [{ tenantKey: "300", owner: shardId, frozen: false }],
      reason: "flip and unfreeze 300",
    });
    await held;
    expect(await whereIs("waited for the freeze")).toEqual(["shard-0"]);

    const short = await router({ freezeBudgetMs: 150 });
    const frozen = await changeTenantRoutes(actor, {
      planId,
      changes: [{ tenantKey: "301", frozen: true }],
      reason: "freeze 301",
    });
    await short.waitForVersion(frozen.version);
    const error = await short
      .forTenant(301)
      .query("insert into items values (301, 'never written')")
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TenantFrozenError);
    expect((error as TenantFrozenError).retryable).toBe(true);
    expect(await whereIs("never written")).toEqual([]);
  });

  it("rolls back a transaction whose tenant was re-routed before COMMIT, with a retryable error", async () => {
    const r = await router();
    const error = await r
      .forTenant(400)
      .transaction(async (tx) => {
        await tx.query("insert into items values (400, 'pinned to legacy')");
        const flip = await changeTenantRoutes(actor, {
          planId,
          changes: [{ tenantKey: "400", owner: shardId }],
          reason: "flip 400 mid-transaction",
        });
        await r.waitForVersion(flip.version);
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StaleRouteError);
    expect((error as StaleRouteError).retryable).toBe(true);
    expect(await whereIs("pinned to legacy")).toEqual([]);
  });
});

// Last in the file: it adds thousands of routes to the plan's map, which the tests above read whole.
describe("a routing change of thousands of tenants (the breaker's scale)", () => {
  it("writes every route, history row and the audit event in one version; a tenant that stays frozen keeps its frozen_at", async () => {
    const tenants = Array.from({ length: 5_000 }, (_, i) => String(50_000 + i));
    const change = (reason: string, to: { owner?: string; frozen?: boolean }) =>
      changeTenantRoutes(actor, {
        planId,
        changes: tenants.map((tenantKey) => ({ tenantKey, ...to })),
        reason,
      });
    const freeze = await change("freeze 5,000 tenants", { frozen: true });
    const frozenAt = await db().tenantRoute.findMany({
      where: { planId, tenantKey: { in: tenants } },
      select: { tenantKey: true, frozenAt: true, version: true },
    });
    expect(frozenAt).toHaveLength(tenants.length);
    expect(frozenAt.every((r) => r.frozenAt !== null && Number(r.version) === freeze.version)).toBe(true);

    const flip = await change("flip them while frozen", { owner: shardId });
    expect(flip).toMatchObject({ version: freeze.version + 1, changed: tenants.length });
    const flipped = await db().tenantRoute.findMany({
      where: { planId, tenantKey: { in: tenants } },
      select: { tenantKey: true, ownerDatabaseId: true, frozen: true, frozenAt: true },
    });
    const before = new Map(frozenAt.map((r) => [r.tenantKey, r.frozenAt?.getTime()]));
    expect(flipped.every((r) => r.ownerDatabaseId === shardId && r.frozen)).toBe(true);
    expect(flipped.every((r) => r.frozenAt?.getTime() === before.get(r.tenantKey))).toBe(true);

    const unfreeze = await change("unfreeze them", { frozen: false });
    expect(
      await db().tenantRoute.count({
        where: { planId, tenantKey: { in: tenants }, frozenAt: { not: null } },
      }),
    ).toBe(0);
    for (const [version, from, to] of [
      [flip.version, null, shardId],
      [unfreeze.version, shardId, shardId],
    ] as const) {
      const history = await db().routingChange.findMany({
        where: { planId, version: BigInt(version) },
        select: { fromOwnerId: true, toOwnerId: true, actorEmail: true },
      });
      expect(history).toHaveLength(tenants.length);
      expect(history.every((h) => h.fromOwnerId === from && h.toOwnerId === to)).toBe(true);
    }
    const audited = await db().auditEvent.findFirstOrThrow({
      where: { action: "routing.change", planId },
      orderBy: { seq: "desc" },
    });
    const groups = (audited.after as { version: number; routes: { tenants: string[] }[] }).routes;
    expect(groups.flatMap((g) => g.tenants).sort()).toEqual([...tenants].sort());
    expect((await verifyAuditChain(db())).ok).toBe(true);
  });
});

describe("a map change decided on the route the caller knows (the cutover's flip)", () => {
  it("is decided again on a fresh read when what it assumed is wrong, and chains its audit event", async () => {
    await changeTenantRoutes(actor, {
      planId,
      changes: [{ tenantKey: "8", frozen: true }],
      reason: "freeze 8",
    });
    const client = new pg.Client({ connectionString: control.url });
    await client.connect();
    try {
      const draft = draftRoutingAuditAs(actor);
      const request = { planId, actor: { id: null, email: "system" }, reason: "assumed" };
      // Assumed unfrozen on legacy, but it is frozen: the function refuses, the next try reads.
      const moved = await writeRoutingChangeAtomic(
        client,
        { ...request, changes: [{ tenantKey: "8", ownerId: shardId }] },
        draft,
        { known: { shards: [shardId], routes: new Map([["8", { ownerId: null, frozen: false }]]) } },
      );
      expect(moved?.diffs).toEqual([
        { tenantKey: "8", from: { ownerId: null, frozen: true }, to: { ownerId: shardId, frozen: true } },
      ]);
      // Assumed already what is asked (nothing to change), but it is not: decided on a read, written.
      const unfrozen = await writeRoutingChangeAtomic(
        client,
        { ...request, changes: [{ tenantKey: "8", frozen: false }] },
        draft,
        { known: { shards: [shardId], routes: new Map([["8", { ownerId: shardId, frozen: false }]]) } },
      );
      expect(unfrozen?.version).toBe((moved?.version ?? 0) + 1);
      expect(await lookupTenantRoute(planId, "8")).toMatchObject({ owner: { id: shardId }, frozen: false });
      expect((await verifyAuditChain(db())).ok).toBe(true);
    } finally {
      await client.end();
    }
  });
});
