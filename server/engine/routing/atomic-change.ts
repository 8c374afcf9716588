// A routing-map change written by ONE statement (the plpgsql function shardshift_routing_change,
// migration 20261204200000), for the cutover's freeze, flip and unfreeze.
//
// Why: writeRoutingChange (routing-map.ts) runs a dozen statements inside an interactive Prisma
// transaction, holding the map's row lock and then the audit chain's lock across every round trip.
// With eight cutovers at once on a loaded machine those waits, queued behind each other, were
// most of each tenant's freeze. Here the change is decided on a read without locks, the audit
// event drafted (its body is what the chain hashes), and one call applies it: the locks live for
// the statement's own execution.
//
// Safety is the same as writeRoutingChange's: the function refuses (SQLSTATE SS101, nothing
// written) when a tenant's route is no longer what the decision read, and this retries on a fresh
// read; the versions, known only under the lock, are filled into the audit body there (tokens
// below), and the hash is computed there exactly as appendAuditEvent computes it.
import type pg from "pg";
import {
  decideRoutingChange,
  type RoutingChangeRecord,
  RoutingChangeRefused,
  type RoutingChangeRequest,
  type TenantRouteState,
} from "./routing-map";

/** Stand for the map versions in the drafted audit event; the function replaces them. */
export const PREV_VERSION_TOKEN = "@@shardshift:prev-version@@";
export const VERSION_TOKEN = "@@shardshift:version@@";

/** An audit event drafted by the services' audit log (draftAuditEvent), for the database to chain. */
export interface RoutingAuditEventDraft {
  at: string;
  actorId: string | null;
  actorEmail: string;
  role: string;
  action: string;
  targetType: string;
  targetId: string | null;
  planId: string | null;
  before: string | null;
  after: string | null;
  reason: string | null;
  requestId: string;
  clientRequestId: string | null;
  /** The canonical text the chain hashes after the previous hash. */
  body: string;
}

/** Drafts the audit event of a change, with the versions as the tokens above (injected by the process). */
export type RoutingAuditDraft = (
  record: Pick<RoutingChangeRecord, "planId" | "diffs" | "reason"> & {
    previousVersion: string;
    version: string;
  },
) => RoutingAuditEventDraft;

/** A cutover attempt's status change written by the same statement, guarded by the status it leaves. */
export interface AttemptStatusWrite {
  id: string;
  from: string;
  to: string;
  /** Appended to the attempt's steps; omitted: the steps stay as they are. */
  step?: Record<string, unknown>;
  freezeStartedAt?: Date;
  freezeEndedAt?: Date;
  /** Record the new map version as the attempt's flip version. */
  flipVersion?: boolean;
}

/** SQLSTATE of the function's refusal when the attempt is no longer in `from`. */
export const ATTEMPT_CONFLICT_SQLSTATE = "SS102";
const ROUTE_CONFLICT_SQLSTATE = "SS101";
const MAX_TRIES = 5;

type Client = Pick<pg.ClientBase, "query" | "escapeLiteral">;

async function readRoutes(
  client: Client,
  planId: string,
  tenants: readonly string[],
): Promise<{ exists: boolean; shards: string[]; routes: Map<string, TenantRouteState> }> {
  const { rows } = await client.query<{
    exists: boolean;
    shards: string[];
    routes: { k: string; o: string | null; f: boolean }[];
  }>(
    `select exists(select 1 from plan where id = $1::uuid) as exists,
       (select coalesce(array_agg(database_id::text), '{}') from plan_shard where plan_id = $1::uuid) as shards,
       (select coalesce(jsonb_agg(jsonb_build_object('k', tenant_key, 'o', owner_database_id, 'f', frozen)), '[]')
          from tenant_route where plan_id = $1::uuid and tenant_key = any($2::text[])) as routes`,
    [planId, tenants],
  );
  const row = rows[0];
  return {
    exists: row?.exists ?? false,
    shards: row?.shards ?? [],
    routes: new Map((row?.routes ?? []).map((r) => [r.k, { ownerId: r.o, frozen: r.f }])),
  };
}

/**
 * Applies `request` in one statement on `client` (a connection of the caller's own: the cutover
 * runner's), with the attempt's status change when given. `statementTimeoutMs` bounds it on the
 * server: past it the statement is cancelled and nothing is written. Returns the record, or null
 * when nothing would change (then nothing is written, the attempt's status included).
 */
export async function writeRoutingChangeAtomic(
  client: Client,
  request: RoutingChangeRequest,
  draft: RoutingAuditDraft,
  options: {
    attempt?: AttemptStatusWrite;
    statementTimeoutMs?: number;
    /**
     * What the caller already knows of the plan (its shards) and of the changed tenants' routes:
     * the first try decides on it instead of reading (one round trip less inside a cutover's
     * freeze). Safe when wrong: the function refuses a route that is not what was assumed
     * (SS101, nothing written) and the next try reads.
     */
    known?: { shards: readonly string[]; routes: ReadonlyMap<string, TenantRouteState> };
  } = {},
): Promise<RoutingChangeRecord | null> {
  const keys = request.changes.map((c) => c.tenantKey);
  for (let attempt = 1; ; attempt++) {
    const assumed = attempt === 1 ? options.known : undefined;
    const read = assumed
      ? { exists: true, shards: [...assumed.shards], routes: new Map(assumed.routes) }
      : await readRoutes(client, request.planId, keys);
    if (!read.exists) throw new RoutingChangeRefused(`Plan ${request.planId} does not exist.`, "not_found");
    const decision = decideRoutingChange(read.routes, request.changes, new Set(read.shards));
    // Refusals and "nothing to change" are only decided on what the store says.
    if (assumed && (!decision.ok || decision.diffs.length === 0)) continue;
    if (!decision.ok)
      throw new RoutingChangeRefused(decision.reason, decision.conflict ? "conflict" : "invalid");
    if (decision.diffs.length === 0) return null;
    const reason = request.reason.trim();
    const event = draft({
      planId: request.planId,
      diffs: decision.diffs,
      reason,
      previousVersion: PREV_VERSION_TOKEN,
      version: VERSION_TOKEN,
    });
    if (JSON.stringify(decision.diffs).includes("@@shardshift:") || reason.includes("@@shardshift:")) {
      throw new RoutingChangeRefused(
        "A tenant key or reason contains a reserved marker (@@shardshift:).",
        "invalid",
      );
    }
    const changes = decision.diffs.map((d) => ({
      tenantKey: d.tenantKey,
      fromOwner: d.from.ownerId,
      fromFrozen: d.from.frozen,
      toOwner: d.to.ownerId,
      toFrozen: d.to.frozen,
    }));
    const at = new Date(event.at);
    const args = [
      request.planId,
      JSON.stringify(changes),
      request.actor.id,
      request.actor.email,
      reason,
      at.toISOString(),
      JSON.stringify(event),
      options.attempt ? JSON.stringify(options.attempt) : null,
    ];
    const call =
      "select shardshift_routing_change($1::uuid, $2::jsonb, $3, $4, $5, $6::timestamptz, $7::jsonb, $8::jsonb)::text as version";
    try {
      let version: string | undefined;
      if (options.statementTimeoutMs === undefined) {
        const { rows } = await client.query<{ version: string }>(call, args);
        version = rows[0]?.version;
      } else {
        // One message, one implicit transaction: the timeout applies to the call that follows it.
        const literals = args.map((a) => (a === null ? "null" : client.escapeLiteral(a)));
        const text = `select set_config('statement_timeout', '${Math.max(1, Math.round(options.statementTimeoutMs))}', true); ${call.replace(/\$(\d)/g, (_, n) => literals[Number(n) - 1] as string)}`;
        const results = (await client.query(text)) as unknown as pg.QueryResult<{ version: string }>[];
        version = results[1]?.rows[0]?.version;
      }
      const next = Number(version);
      return {
        planId: request.planId,
        version: next,
        previousVersion: next - 1,
        diffs: decision.diffs,
        reason,
      };
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === ROUTE_CONFLICT_SQLSTATE && (attempt < MAX_TRIES || assumed)) continue;
      if (code === ROUTE_CONFLICT_SQLSTATE) {
        throw new RoutingChangeRefused(
          `The routes of ${keys.join(", ")} kept changing while this change was decided (${MAX_TRIES} tries); try again.`,
          "conflict",
        );
      }
      throw error;
    }
  }
}
