// The routing map of a plan (invariant 1): tenant → owner (legacy or one of the plan's shards) plus
// a freeze flag, under a version that rises by exactly one with every change.
//
// Design:
// - Sparse: only tenants the map ever changed have a row (tenant_route); every other tenant is on
//   legacy and not frozen. The demo has thousands of tenants and most never move at once.
// - A change (one or many tenants: a cutover flips one, a rollback of a scope flips many in one
//   version) is written in ONE control-plane transaction with: the routing_map row locked and its
//   version + 1, every route's new state stamped with that version, one history row per tenant
//   (who, why, when, from → to), the audit event (the caller's writer, same transaction), and a
//   NOTIFY that PostgreSQL delivers only on commit. So nothing — a router long-polling the map, a
//   fence sync, a cutover step — can see or act on a version before it is durable with its audit.
// - Routes are never deleted, so "changed since version V" (the HTTP delta) is exact.
// - The engine does not import the services' audit log: the caller passes the audit writer (the
//   routing service passes the signed-in actor's; the engine process injects a system actor's).
//
// Invariants:
// - versions of one plan are 1, 2, 3 … with no gap and no repeat (the row lock serialises writers);
// - a change that changes nothing writes nothing and takes no version;
// - an owner is legacy (null) or a shard of the plan, nothing else.

import type { WireDatabase, WireRoute, WireRoutingMap } from "../../../sdk/map-types";
import type { Prisma } from "../../generated/prisma/client";

/** NOTIFY channel: payload "<planId>:<version>", sent on commit of each change. */
export const ROUTING_MAP_CHANNEL = "shardshift_routing_map";

/** Legacy is the owner when ownerId is null. */
export interface TenantRouteState {
  ownerId: string | null;
  frozen: boolean;
}

export const LEGACY_ROUTE: TenantRouteState = { ownerId: null, frozen: false };

export interface RouteChange {
  tenantKey: string;
  /** New owner: null for legacy, a shard's database id; omitted: unchanged. */
  ownerId?: string | null;
  /** New freeze flag; omitted: unchanged. */
  frozen?: boolean;
  /**
   * Apply the change only to this route (owner and freeze flag exactly so); any other route refuses
   * the whole change as a conflict, nothing written. A cutover's freeze, flip and abort say which
   * route their step is for: a route someone else changed meanwhile is not theirs to overwrite.
   */
  onlyFrom?: TenantRouteState;
}

export interface RouteDiff {
  tenantKey: string;
  from: TenantRouteState;
  to: TenantRouteState;
}

export type RoutingDecision =
  | { ok: true; diffs: RouteDiff[] }
  | {
      ok: false;
      reason: string /** A route was not the one a change required (onlyFrom). */;
      conflict?: true;
    };

/**
 * Pure: what a requested change does to the current routes. Refuses an owner that is not one of
 * the plan's shards (or legacy) and a tenant named twice; drops changes that change nothing.
 */
export function decideRoutingChange(
  current: ReadonlyMap<string, TenantRouteState>,
  changes: readonly RouteChange[],
  shardIds: ReadonlySet<string>,
): RoutingDecision {
  const seen = new Set<string>();
  const diffs: RouteDiff[] = [];
  for (const change of changes) {
    if (seen.has(change.tenantKey)) {
      return {
        ok: false,
        reason: `Tenant ${change.tenantKey} is named twice in one routing change; name each tenant once.`,
      };
    }
    seen.add(change.tenantKey);
    if (change.ownerId != null && !shardIds.has(change.ownerId)) {
      return {
        ok: false,
        reason: `Database ${change.ownerId} is not a shard of this plan, so it cannot own tenant ${change.tenantKey}; choose one of the plan's shards or legacy.`,
      };
    }
    const from = current.get(change.tenantKey) ?? LEGACY_ROUTE;
    const only = change.onlyFrom;
    if (only && (only.ownerId !== from.ownerId || only.frozen !== from.frozen)) {
      const say = (r: TenantRouteState) =>
        `${r.ownerId === null ? "legacy" : `database ${r.ownerId}`} (${r.frozen ? "frozen" : "not frozen"})`;
      return {
        ok: false,
        conflict: true,
        reason: `The route of tenant ${change.tenantKey} changed: it now says ${say(from)}; this change was for ${say(only)}.`,
      };
    }
    const to: TenantRouteState = {
      ownerId: change.ownerId === undefined ? from.ownerId : change.ownerId,
      frozen: change.frozen ?? from.frozen,
    };
    if (to.ownerId !== from.ownerId || to.frozen !== from.frozen)
      diffs.push({ tenantKey: change.tenantKey, from, to });
  }
  return { ok: true, diffs };
}

export interface RoutingChangeRequest {
  planId: string;
  changes: readonly RouteChange[];
  /** Refuse the change unless the map is still at this version (a decision taken on a stale read). */
  expectedVersion?: number;
  actor: { id: string | null; email: string };
  reason: string;
}

export interface RoutingChangeRecord {
  planId: string;
  version: number;
  previousVersion: number;
  diffs: RouteDiff[];
  reason: string;
}

/** Writes the audit event of a routing change in the same transaction (see the module comment). */
export type RoutingAuditWriter = (tx: Prisma.TransactionClient, record: RoutingChangeRecord) => Promise<void>;

export class RoutingChangeRefused extends Error {
  constructor(
    message: string,
    readonly kind: "conflict" | "invalid" | "not_found",
  ) {
    super(message);
    this.name = "RoutingChangeRefused";
  }
}

/**
 * Applies a routing change inside the caller's transaction (use a transaction of its own: the map
 * row stays locked until it ends). Returns the record, or null when nothing changed.
 */
export async function writeRoutingChange(
  tx: Prisma.TransactionClient,
  request: RoutingChangeRequest,
  audit: RoutingAuditWriter,
): Promise<RoutingChangeRecord | null> {
  const plan = await tx.plan.findUnique({
    where: { id: request.planId },
    select: { id: true, shards: { select: { databaseId: true } } },
  });
  if (!plan) throw new RoutingChangeRefused(`Plan ${request.planId} does not exist.`, "not_found");
  await tx.$executeRaw`insert into routing_map (plan_id) values (${request.planId}::uuid) on conflict do nothing`;
  const locked = await tx.$queryRaw<{ version: bigint }[]>`
    select version from routing_map where plan_id = ${request.planId}::uuid for no key update`;
  const previousVersion = Number(locked[0]?.version ?? 0n);
  if (request.expectedVersion !== undefined && request.expectedVersion !== previousVersion) {
    throw new RoutingChangeRefused(
      `The routing map is at version ${previousVersion}, not ${request.expectedVersion}: it changed meanwhile. Read it again and decide again.`,
      "conflict",
    );
  }
  // The tenants' keys as ONE parameter (a JSON array), not one bind parameter each: a rollback
  // names thousands of tenants, and this runs while the map row is locked.
  const keys = JSON.stringify(request.changes.map((c) => c.tenantKey));
  const found = await tx.$queryRaw<{ tenant_key: string; owner: string | null; frozen: boolean }[]>`
    select tenant_key, owner_database_id::text as owner, frozen from tenant_route
    where plan_id = ${request.planId}::uuid
      and tenant_key in (select jsonb_array_elements_text(${keys}::jsonb))`;
  const rows = found.map((r) => ({ tenantKey: r.tenant_key, ownerDatabaseId: r.owner, frozen: r.frozen }));
  const current = new Map(rows.map((r) => [r.tenantKey, { ownerId: r.ownerDatabaseId, frozen: r.frozen }]));
  const decision = decideRoutingChange(
    current,
    request.changes,
    new Set(plan.shards.map((s) => s.databaseId)),
  );
  if (!decision.ok)
    throw new RoutingChangeRefused(decision.reason, decision.conflict ? "conflict" : "invalid");
  if (decision.diffs.length === 0) return null;

  const version = previousVersion + 1;
  const now = new Date();
  const reason = request.reason.trim();
  // Every route of the change in ONE statement: a rollback of thousands of tenants must not pay a
  // round trip per tenant while the map row is locked and their writes are frozen (the breaker's
  // freeze and flip; 1,000 upserts one by one took > 15 s on a loaded machine). frozen_at is kept
  // from the stored row when the tenant stays frozen (the map row lock makes it the row read above).
  const routes = decision.diffs.map((d) => ({ k: d.tenantKey, o: d.to.ownerId, f: d.to.frozen }));
  await tx.$executeRaw`
    insert into tenant_route as r (plan_id, tenant_key, owner_database_id, frozen, frozen_at, version, updated_at)
    select ${request.planId}::uuid, c.k, c.o::uuid, c.f, case when c.f then ${now}::timestamptz end,
           ${BigInt(version)}::bigint, ${now}::timestamptz
    from jsonb_to_recordset(${JSON.stringify(routes)}::jsonb) as c(k text, o text, f boolean)
    on conflict (plan_id, tenant_key) do update set
      owner_database_id = excluded.owner_database_id,
      frozen = excluded.frozen,
      frozen_at = case when excluded.frozen then coalesce(case when r.frozen then r.frozen_at end, excluded.frozen_at) end,
      version = excluded.version,
      updated_at = excluded.updated_at`;
  // One history row per tenant, likewise in one statement with the changes as one parameter.
  const history = decision.diffs.map((d) => ({
    k: d.tenantKey,
    fo: d.from.ownerId,
    o: d.to.ownerId,
    ff: d.from.frozen,
    f: d.to.frozen,
  }));
  await tx.$executeRaw`
    insert into routing_change (plan_id, version, tenant_key, from_owner_id, to_owner_id, from_frozen, to_frozen,
                                actor_id, actor_email, reason, at)
    select ${request.planId}::uuid, ${BigInt(version)}::bigint, c.k, c.fo::uuid, c.o::uuid, c.ff, c.f,
           ${request.actor.id}::text, ${request.actor.email}::text, ${reason || null}::text, ${now}::timestamptz
    from jsonb_to_recordset(${JSON.stringify(history)}::jsonb) as c(k text, fo text, o text, ff boolean, f boolean)`;
  await tx.routingMap.update({
    where: { planId: request.planId },
    data: { version: BigInt(version), updatedAt: now },
  });
  const record: RoutingChangeRecord = {
    planId: request.planId,
    version,
    previousVersion,
    diffs: decision.diffs,
    reason,
  };
  await audit(tx, record);
  // Delivered by PostgreSQL on commit only: long-polling routers learn of the change once it is durable.
  await tx.$executeRaw`select pg_notify(${ROUTING_MAP_CHANNEL}, ${`${request.planId}:${version}`})`;
  return record;
}

type MapReader = Pick<Prisma.TransactionClient, "plan" | "routingMap" | "tenantRoute">;

/** The plan's current map version (0 before its first change). */
export async function routingMapVersion(store: MapReader, planId: string): Promise<number> {
  const row = await store.routingMap.findUnique({ where: { planId }, select: { version: true } });
  return Number(row?.version ?? 0n);
}

/**
 * The map as routers receive it: every route, or (with `since`) the routes changed after that
 * version. Null when the plan does not exist.
 */
export async function readRoutingMap(
  store: MapReader,
  planId: string,
  since: number | null = null,
): Promise<WireRoutingMap | null> {
  const plan = await store.plan.findUnique({
    where: { id: planId },
    select: {
      settings: true,
      sourceDatabase: { select: { id: true, name: true } },
      shards: { orderBy: { ordinal: "asc" }, select: { database: { select: { id: true, name: true } } } },
    },
  });
  if (!plan) return null;
  // Version first: a route written after this read carries a higher version and comes next time.
  const version = await routingMapVersion(store, planId);
  const routes = await store.tenantRoute.findMany({
    where: { planId, ...(since === null ? {} : { version: { gt: BigInt(since) } }) },
    select: { tenantKey: true, ownerDatabaseId: true, frozen: true, version: true },
    orderBy: { tenantKey: "asc" },
  });
  const legacy: WireDatabase = { ...plan.sourceDatabase, kind: "legacy" };
  const databases: WireDatabase[] = [
    legacy,
    ...plan.shards.map((s) => ({ ...s.database, kind: "shard" as const })),
  ];
  const names = new Map(databases.map((d) => [d.id, d.name]));
  const tenants: WireRoute[] = [];
  for (const route of routes) {
    // A route written by a change that committed after we read the version waits for the next read.
    if (Number(route.version) > version) continue;
    const ownerId = route.ownerDatabaseId ?? legacy.id;
    tenants.push({
      tenant: route.tenantKey,
      owner: names.get(ownerId) ?? ownerId,
      ownerId,
      frozen: route.frozen,
      version: Number(route.version),
    });
  }
  const settings = plan.settings as { freezeBudgetMs?: unknown };
  return {
    planId,
    version,
    delta: since !== null,
    since,
    freezeBudgetMs: typeof settings.freezeBudgetMs === "number" ? settings.freezeBudgetMs : 2000,
    legacy,
    databases,
    tenants,
  };
}
