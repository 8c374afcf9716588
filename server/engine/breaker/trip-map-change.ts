// The breaker's freeze and flip on the routing map: ONE statement (shardshift_breaker_change,
// migration 20261205300000) writes every tenant's route and history row, the audit event and the
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

/**
 * Writes `change` and the trip's step in one statement through `exec`. Returns the record, or null
 * when the map would not change (then nothing is written, the trip's step included: the caller
 * records it).
 */
export async function writeTripMapChange(
  exec: SqlExec,
  change: TripMapChange,
  draft: RoutingAuditDraft,
  trip: TripStepWrite,
): Promise<RoutingChangeRecord | null> {
  const read = await readRoutes(
    exec,
    change.planId,
    change.changes.map((c) => c.tenantKey),
  );
  const decision = decideRoutingChange(read.routes, change.changes, new Set(read.shards));
  if (!decision.ok) throw new RoutingChangeRefused(decision.reason, "invalid");
  if (decision.diffs.length === 0) return null;
  const reason = change.reason.trim();
  if (reason.includes("@@shardshift:") || JSON.stringify(decision.diffs).includes("@@shardshift:")) {
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
  const changes = decision.diffs.map((d) => ({
    tenant_key: d.tenantKey,
    from_owner: d.from.ownerId,
    from_frozen: d.from.frozen,
    to_owner: d.to.ownerId,
    to_frozen: d.to.frozen,
  }));
  const [row] = await exec<{ version: string }>(
    `select shardshift_breaker_change($1::uuid, $2::jsonb, $3::text, $4::text, $5::text, $6::timestamptz,
                                      $7::jsonb, $8::jsonb)::text as version`,
    [
      change.planId,
      JSON.stringify(changes),
      change.actor.id,
      change.actor.email,
      reason,
      new Date(event.at).toISOString(),
      JSON.stringify(event),
      JSON.stringify(trip),
    ],
  );
  const version = Number(row?.version);
  return { planId: change.planId, version, previousVersion: version - 1, diffs: decision.diffs, reason };
}
