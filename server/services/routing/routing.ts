// The routing map's control-plane side: who may change it (auth is the procedure's; this adds the
// audit event in the change's own transaction), what a person sees of a tenant, and the map as
// routers read it. The map itself — versions, sparse routes, history — is engine code
// (server/engine/routing/routing-map.ts); this service composes it with the audit log.

import type { WireRoutingMap } from "../../../sdk/map-types";
import { db } from "../../db";
import type { RoutingAuditDraft } from "../../engine/routing/atomic-change";
import { installPlanFences, loadPlanFences, syncPlanFences } from "../../engine/routing/plan-fences";
import {
  type RoutingAuditWriter,
  type RoutingChangeRecord,
  RoutingChangeRefused,
  readRoutingMap,
  routingMapVersion,
  writeRoutingChange,
} from "../../engine/routing/routing-map";
import { AppError } from "../../errors";
import type { TChangeRoutesInput } from "../../schemas/routing";
import type { Actor } from "../actor";
import { appendAuditEvent, draftAuditEvent } from "../audit/audit-log";

/** The audit event of a routing change (versions as given: numbers, or the atomic write's placeholders). */
function routingAuditInput(
  actor: Actor,
  record: Pick<RoutingChangeRecord, "planId" | "diffs" | "reason"> & {
    previousVersion: unknown;
    version: unknown;
  },
) {
  return {
    actor,
    action: "routing.change",
    target: { type: "plan", id: record.planId },
    planId: record.planId,
    before: { version: record.previousVersion, routes: groupedRoutes(record.diffs, "from") },
    after: { version: record.version, routes: groupedRoutes(record.diffs, "to") },
    reason: record.reason,
  };
}

/**
 * The routes of a change, one entry per (owner, frozen) with its tenants: a breaker rollback of 2,000
 * tenants names each tenant once on each side, not once per route object (the event is drafted,
 * sent, parsed and hashed while the set's writes wait on the freeze).
 */
function groupedRoutes(
  diffs: RoutingChangeRecord["diffs"],
  side: "from" | "to",
): { owner: string; frozen: boolean; tenants: string[] }[] {
  const groups = new Map<string, { owner: string; frozen: boolean; tenants: string[] }>();
  for (const d of diffs) {
    const owner = d[side].ownerId ?? "legacy";
    const frozen = d[side].frozen;
    const key = `${owner}:${frozen}`;
    const group = groups.get(key) ?? { owner, frozen, tenants: [] };
    group.tenants.push(d.tenantKey);
    groups.set(key, group);
  }
  return [...groups.values()];
}

/** The audit writer for routing changes made by `actor` (also what the engine process injects, with a system actor). */
export function auditRoutingChangesAs(actor: Actor): RoutingAuditWriter {
  return async (tx, record) => {
    await appendAuditEvent(tx, routingAuditInput(actor, record));
  };
}

/** The same event, drafted for the one-statement map change the cutover uses (atomic-change.ts). */
export function draftRoutingAuditAs(actor: Actor): RoutingAuditDraft {
  return (record) => draftAuditEvent(routingAuditInput(actor, record));
}

export interface RoutingChangeOutcome {
  version: number;
  changed: number;
  /** Per database: the fence version reached, or why not (the fence watch retries). Empty without fences. */
  fences: { database: string; version: number; error?: string }[];
}

/**
 * Changes tenants' routes in one new map version, audited, then pushes the change into the fences
 * (when installed). The map is written first and durably: nothing acts on a change before it is
 * committed. A change that changes nothing takes no version.
 */
export async function changeTenantRoutes(
  actor: Actor,
  input: TChangeRoutesInput,
): Promise<RoutingChangeOutcome> {
  let record: Awaited<ReturnType<typeof writeRoutingChange>>;
  try {
    record = await db().$transaction(
      (tx) =>
        writeRoutingChange(
          tx,
          {
            planId: input.planId,
            changes: input.changes.map((c) => ({
              tenantKey: c.tenantKey,
              ownerId: c.owner === undefined ? undefined : c.owner === "legacy" ? null : c.owner,
              frozen: c.frozen,
            })),
            expectedVersion: input.expectedVersion,
            actor: { id: actor.id, email: actor.email },
            reason: input.reason,
          },
          auditRoutingChangesAs(actor),
        ),
      { timeout: 15_000, maxWait: 10_000 },
    );
  } catch (error) {
    if (error instanceof RoutingChangeRefused) {
      throw new AppError(
        error.kind === "conflict" ? "CONFLICT" : error.kind === "not_found" ? "NOT_FOUND" : "BAD_REQUEST",
        `${error.message} Nothing was changed.`,
        { cause: error },
      );
    }
    throw error;
  }
  if (!record) {
    return { version: await routingMapVersion(db(), input.planId), changed: 0, fences: [] };
  }
  const map = await db().routingMap.findUnique({
    where: { planId: input.planId },
    select: { fenceInstalledAt: true },
  });
  let fences: RoutingChangeOutcome["fences"] = [];
  if (map?.fenceInstalledAt) {
    const outcomes = await syncPlanFences(await loadPlanFences(input.planId));
    fences = outcomes.map((o) => ({ database: o.database, version: o.to, error: o.error }));
  }
  return { version: record.version, changed: record.diffs.length, fences };
}

/** Installs the fences on legacy and every shard of the plan (idempotent), audited. */
export async function installFences(actor: Actor, input: { planId: string; reason: string }) {
  let fences: Awaited<ReturnType<typeof loadPlanFences>>;
  try {
    fences = await loadPlanFences(input.planId);
  } catch (error) {
    throw new AppError("PRECONDITION_FAILED", (error as Error).message, { cause: error });
  }
  try {
    await installPlanFences(fences);
  } catch (error) {
    throw new AppError("PRECONDITION_FAILED", (error as Error).message, { cause: error });
  }
  await db().$transaction((tx) =>
    appendAuditEvent(tx, {
      actor,
      action: "routing.fence.install",
      target: { type: "plan", id: input.planId },
      planId: input.planId,
      after: {
        databases: fences.all.map((d) => d.name),
        tables: fences.schema.tables.filter((t) => t.kind === "sharded").map((t) => t.qualified),
      },
      reason: input.reason,
    }),
  );
  return { databases: fences.all.map((d) => d.name) };
}

/** The map as routers read it, from one snapshot (version and routes agree). */
export async function readRoutingMapSnapshot(
  planId: string,
  since: number | null,
): Promise<WireRoutingMap | null> {
  return db().$transaction((tx) => readRoutingMap(tx, planId, since), { isolationLevel: "RepeatableRead" });
}

export interface TenantRouteView {
  tenantKey: string;
  mapVersion: number;
  owner: { id: string; name: string; kind: "legacy" | "shard" };
  frozen: boolean;
  frozenAt: Date | null;
  /** The map version of this tenant's last change; null when the map never changed it. */
  routeVersion: number | null;
  /** Newest first. */
  history: {
    version: number;
    at: Date;
    actorEmail: string;
    reason: string | null;
    from: { owner: string; frozen: boolean };
    to: { owner: string; frozen: boolean };
  }[];
}

async function planDatabases(planId: string) {
  const plan = await db().plan.findUnique({
    where: { id: planId },
    select: {
      sourceDatabase: { select: { id: true, name: true } },
      shards: { select: { database: { select: { id: true, name: true } } } },
    },
  });
  if (!plan)
    throw new AppError(
      "NOT_FOUND",
      "This plan does not exist (it may have been deleted). Go back to the plans list.",
    );
  const names = new Map<string, string>(plan.shards.map((s) => [s.database.id, s.database.name]));
  return { legacy: plan.sourceDatabase, names };
}

export async function lookupTenantRoute(planId: string, tenantKey: string): Promise<TenantRouteView> {
  const { legacy, names } = await planDatabases(planId);
  const ownerName = (id: string | null) => (id === null ? legacy.name : (names.get(id) ?? id));
  const [mapVersion, route, changes] = await Promise.all([
    routingMapVersion(db(), planId),
    db().tenantRoute.findUnique({ where: { planId_tenantKey: { planId, tenantKey } } }),
    db().routingChange.findMany({
      where: { planId, tenantKey },
      orderBy: { version: "desc" },
      take: 200,
    }),
  ]);
  const ownerId = route?.ownerDatabaseId ?? null;
  return {
    tenantKey,
    mapVersion,
    owner:
      ownerId === null
        ? { ...legacy, kind: "legacy" }
        : { id: ownerId, name: ownerName(ownerId), kind: "shard" },
    frozen: route?.frozen ?? false,
    frozenAt: route?.frozenAt ?? null,
    routeVersion: route ? Number(route.version) : null,
    history: changes.map((c) => ({
      version: Number(c.version),
      at: c.at,
      actorEmail: c.actorEmail,
      reason: c.reason,
      from: { owner: ownerName(c.fromOwnerId), frozen: c.fromFrozen },
      to: { owner: ownerName(c.toOwnerId), frozen: c.toFrozen },
    })),
  };
}

export interface RoutingSummary {
  mapVersion: number;
  updatedAt: Date | null;
  tenantsOnShards: number;
  tenantsFrozen: number;
  fenceInstalledAt: Date | null;
  strayWrites: {
    total: number;
    /** Refused as not the owner: a write that bypassed the router or outlived a flip. */
    notOwner: number;
    recent: { at: Date; database: string; tenantKey: string | null; reason: string; count: number }[];
  };
}

export async function routingSummary(planId: string): Promise<RoutingSummary> {
  await planDatabases(planId);
  const [map, onShards, frozen, strayTotal, strayNotOwner, recent] = await Promise.all([
    db().routingMap.findUnique({ where: { planId } }),
    db().tenantRoute.count({ where: { planId, ownerDatabaseId: { not: null } } }),
    db().tenantRoute.count({ where: { planId, frozen: true } }),
    db().strayWrite.aggregate({ where: { planId }, _sum: { count: true } }),
    db().strayWrite.aggregate({ where: { planId, reason: "not_owner" }, _sum: { count: true } }),
    db().strayWrite.findMany({ where: { planId }, orderBy: { id: "desc" }, take: 50 }),
  ]);
  return {
    mapVersion: Number(map?.version ?? 0n),
    updatedAt: map && map.version > 0n ? map.updatedAt : null,
    tenantsOnShards: onShards,
    tenantsFrozen: frozen,
    fenceInstalledAt: map?.fenceInstalledAt ?? null,
    strayWrites: {
      total: strayTotal._sum.count ?? 0,
      notOwner: strayNotOwner._sum.count ?? 0,
      recent: recent.map((s) => ({
        at: s.observedAt,
        database: s.databaseName,
        tenantKey: s.tenantKey,
        reason: s.reason,
        count: s.count,
      })),
    },
  };
}
