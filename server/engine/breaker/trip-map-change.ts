// The breaker's freeze and flip on the routing map: ONE statement (shardshift_breaker_change,
// migrations 20261205300000 and 20261206100000) writes every tenant's route and history row, the audit event and the
// trip's step, set-based, for the whole set. writeRoutingChange (routing-map.ts) did the same in a
// dozen round trips inside an interactive transaction, holding the map row's and the audit chain's
// locks across them while 2,000 tenants' writes waited on the freeze.
//
// The change is decided here on a read (decideRoutingChange, as every map change is), the audit
// event drafted by the process's drafter (atomic-change.ts's tokens stand for the versions), and
// the function refuses with SS101 if a route moved since the read (nothing written) and with SS103
// if the trip is no longer in the status the step leaves.
import { PREV_VERSION_TOKEN, type RoutingAuditDraft, VERSION_TOKEN } from "../routing/atomic-change";
import {
  decideRoutingChange,
  LEGACY_ROUTE,
  type RouteChange,
  type RoutingChangeRecord,
  RoutingChangeRefused,
  type TenantRouteState,
} from "../routing/routing-map";

/** Runs one statement with positional parameters: a Prisma transaction's or a pg client's. */
export type SqlExec = <T>(sql: string, params: unknown[]) => Promise<T[]>;

/** SQLSTATE: a route changed between the read and the write (decide again). */
export const ROUTE_MOVED_SQLSTATE = "SS101";
/** SQLSTATE: the trip is no longer in the status its step leaves. */
export const TRIP_MOVED_SQLSTATE = "SS103";

/**
 * A route of the set is not what the rollback knows it to be (an operator's change since the set
 * was read, frozen and fenced): the change is not written. The freeze reads the set again; the
 * flip gives up — its drain covered the tenants as they were fenced, not as they are now.
 */
export class RouteNotAsExpected extends Error {
  constructor(readonly moved: { tenantKey: string; expected: Expected; found: TenantRouteState }[]) {
    super(
      `the route of ${moved
        .slice(0, 5)
        .map(
          (m) =>
            `tenant ${m.tenantKey} is ${m.found.ownerId ?? "legacy"}${m.found.frozen ? " (frozen)" : ""}, not ${m.expected.ownerId ?? "legacy"}${m.expected.frozen === undefined ? "" : m.expected.frozen ? " (frozen)" : " (unfrozen)"}`,
        )
        .join(", ")}${moved.length > 5 ? `, and ${moved.length - 5} more` : ""}`,
    );
    this.name = "RouteNotAsExpected";
  }
}

/** What a route must be for the change to be written: its owner, and its frozen flag when given. */
export interface Expected {
  ownerId: string | null;
  frozen?: boolean;
}

/** The trip's side of the statement (see the migration). */
export interface TripStepWrite {
  id: string;
  from: string;
  steps: unknown[];
  tenants?: unknown;
  outcomes?: unknown;
  freezeStartedAt?: Date;
  flippedAt?: Date;
  freezeVersion?: boolean;
  flipVersion?: boolean;
}

export interface TripMapChange {
  planId: string;
  changes: readonly RouteChange[];
  actor: { id: string | null; email: string };
  reason: string;
}

async function readRoutes(
  exec: SqlExec,
  planId: string,
  tenants: readonly string[],
): Promise<{ shards: string[]; routes: Map<string, TenantRouteState> }> {
  const [row] = await exec<{
    shards: string[] | null;
    routes: { k: string; o: string | null; f: boolean }[] | null;
  }>(
    `select (select jsonb_agg(database_id::text) from plan_shard where plan_id = $1::uuid) as shards,
            (select jsonb_agg(jsonb_build_object('k', tenant_key, 'o', owner_database_id, 'f', frozen))
               from tenant_route
              where plan_id = $1::uuid and tenant_key in (select jsonb_array_elements_text($2::jsonb))) as routes`,
    [planId, JSON.stringify(tenants)],
  );
  return {
    shards: row?.shards ?? [],
    routes: new Map((row?.routes ?? []).map((r) => [r.k, { ownerId: r.o, frozen: r.f }])),
  };
}

/** What the caller already read of the plan's shards and the changed tenants' routes (see `known`). */
export interface KnownRoutes {
  shards: readonly string[];
  routes: ReadonlyMap<string, TenantRouteState>;
}

/**
 * Writes `change` and the trip's step in one statement through `exec`. Returns the record, or null
 * when the map would not change (then nothing is written, the trip's step included: the caller
 * records it).
 *
 * `known`: the routes the caller read moments ago (the freeze's scope read in the same transaction,
 * the flip's own frozen set), decided on without reading them again — a round trip and a 2,000-key
 * lookup less while the set's writes wait. Safe when stale: the function refuses a route that is
 * not what was assumed (SS101, nothing written) and the caller's next try reads.
 */
export async function writeTripMapChange(
  exec: SqlExec,
  change: TripMapChange,
  draft: RoutingAuditDraft,
  trip: TripStepWrite,
  options: {
    known?: KnownRoutes;
    /** What each route must be for the change to be written (else RouteNotAsExpected). */
    expected?: ReadonlyMap<string, Expected>;
    time?: <T>(name: string, fn: () => Promise<T>) => Promise<T>;
  } = {},
): Promise<RoutingChangeRecord | null> {
  const time = options.time ?? ((_name, fn) => fn());
  const read =
    options.known ??
    (await time("map-read", () =>
      readRoutes(
        exec,
        change.planId,
        change.changes.map((c) => c.tenantKey),
      ),
    ));
  // Checked on the read (or the known routes) the statement then guards (SS101: nothing moved
  // between the two).
  if (options.expected) {
    const moved = routesNotAsExpected(read.routes, options.expected);
    if (moved.length > 0) throw new RouteNotAsExpected(moved);
  }
  const drafted = performance.now();
  const decision = decideRoutingChange(read.routes, change.changes, new Set(read.shards));
  if (!decision.ok) throw new RoutingChangeRefused(decision.reason, "invalid");
  if (decision.diffs.length === 0) return null;
  const reason = change.reason.trim();
  if (reason.includes("@@shardshift:") || decision.diffs.some((d) => d.tenantKey.includes("@@shardshift:"))) {
    throw new RoutingChangeRefused(
      "A tenant key or reason contains a reserved marker (@@shardshift:).",
      "invalid",
    );
  }
  const event = draft({
    planId: change.planId,
    diffs: decision.diffs,
    reason,
    previousVersion: PREV_VERSION_TOKEN,
    version: VERSION_TOKEN,
  });
  const diffs = decision.diffs;
  const params = [
    change.planId,
    diffs.map((d) => d.tenantKey),
    diffs.map((d) => d.from.ownerId),
    diffs.map((d) => d.from.frozen),
    diffs.map((d) => d.to.ownerId),
    diffs.map((d) => d.to.frozen),
    change.actor.id,
    change.actor.email,
    reason,
    new Date(event.at).toISOString(),
    JSON.stringify(event),
    JSON.stringify(trip),
  ];
  const [row] = await time(`map-draft ${Math.round(performance.now() - drafted)}, map-fn`, () =>
    exec<{ version: string }>(
      `select shardshift_breaker_change($1::uuid, $2::text[], $3::uuid[], $4::boolean[], $5::uuid[], $6::boolean[],
                                        $7::text, $8::text, $9::text, $10::timestamptz, $11::jsonb, $12::jsonb)::text as version`,
      params,
    ),
  );
  const version = Number(row?.version);
  return { planId: change.planId, version, previousVersion: version - 1, diffs, reason };
}

/** The tenants whose route (absent: legacy's, unfrozen) is not as expected. */
export function routesNotAsExpected(
  routes: ReadonlyMap<string, TenantRouteState>,
  expected: ReadonlyMap<string, Expected>,
): { tenantKey: string; expected: Expected; found: TenantRouteState }[] {
  const moved: { tenantKey: string; expected: Expected; found: TenantRouteState }[] = [];
  for (const [tenantKey, want] of expected) {
    const found = routes.get(tenantKey) ?? LEGACY_ROUTE;
    if (found.ownerId !== want.ownerId || (want.frozen !== undefined && found.frozen !== want.frozen))
      moved.push({ tenantKey, expected: want, found });
  }
  return moved;
}
