// Which tenants a trip's scope covers, read from the routing map (the owner's only record): the
// service's preview and the runner's freeze read it the same way; the runner reads it again under
// the plan's lock when the freeze begins, so a cutover that ended meanwhile is counted as it ended.
import type { Prisma } from "../../generated/prisma/client";
import type { TBreakerScope } from "../../schemas/breaker";

type Store = Pick<Prisma.TransactionClient, "tenantRoute" | "tenantCutover" | "cohortMember">;

export interface ScopedTenant {
  tenantKey: string;
  /** The shard that owns it now (database id). */
  ownerId: string;
}

export interface ScopeReading {
  /** Tenants of the scope a shard owns: what the rollback moves. */
  onShards: ScopedTenant[];
  /** Tenants named in the scope that legacy already owns: nothing to move. */
  onLegacy: string[];
  /** Of onShards, those frozen on the map now (the freeze decides on this read: trip-map-change.ts). */
  frozen: Set<string>;
}

export async function tenantsInScope(
  store: Store,
  planId: string,
  scope: TBreakerScope,
): Promise<ScopeReading> {
  if (scope.kind === "tenants") {
    const named = [...new Set(scope.tenants)];
    const routes = await store.tenantRoute.findMany({
      where: { planId, tenantKey: { in: named } },
      select: { tenantKey: true, ownerDatabaseId: true, frozen: true },
    });
    const owner = new Map(routes.map((r) => [r.tenantKey, r.ownerDatabaseId]));
    const frozen = new Set(
      routes.filter((r) => r.frozen && r.ownerDatabaseId !== null).map((r) => r.tenantKey),
    );
    const onShards: ScopedTenant[] = [];
    const onLegacy: string[] = [];
    for (const tenantKey of named) {
      const ownerId = owner.get(tenantKey) ?? null;
      if (ownerId === null) onLegacy.push(tenantKey);
      else onShards.push({ tenantKey, ownerId });
    }
    return { onShards, onLegacy, frozen };
  }
  // A cohort's members are read in the same transaction as the map (the freeze's), so a member
  // moved or redrawn meanwhile is judged as it is now; members legacy owns are simply not moved.
  const members = scope.kind === "cohort" ? await cohortMembers(store, planId, scope) : null;
  const routes = await store.tenantRoute.findMany({
    where: {
      planId,
      ownerDatabaseId: scope.kind === "shard" ? scope.databaseId : { not: null },
      ...(members ? { tenantKey: { in: members } } : {}),
    },
    select: { tenantKey: true, ownerDatabaseId: true, frozen: true },
    orderBy: { tenantKey: "asc" },
  });
  return {
    onShards: routes.map((r) => ({ tenantKey: r.tenantKey, ownerId: r.ownerDatabaseId as string })),
    onLegacy: [],
    frozen: new Set(routes.filter((r) => r.frozen).map((r) => r.tenantKey)),
  };
}

type CohortScope = Extract<TBreakerScope, { kind: "cohort" }>;

/** The tenants whose smallest cohort is the scope's (or, with andLater, that one or any after it). */
async function cohortMembers(
  store: Pick<Prisma.TransactionClient, "cohortMember">,
  planId: string,
  scope: CohortScope,
): Promise<string[]> {
  const rows = await store.cohortMember.findMany({
    where: { planId, ordinal: scope.andLater ? { gte: scope.ordinal } : scope.ordinal },
    select: { tenantKey: true },
  });
  return rows.map((r) => r.tenantKey);
}

export const CUTOVER_IN_FLIGHT = ["requested", "prechecking", "fencing", "draining", "flipped", "aborting"];

/**
 * Cutovers in flight that the trip must settle before it freezes: of a named tenant or a member of
 * the cohorts, to or from the named shard, or any (all tenants: a cutover to a shard would add a
 * tenant to the scope).
 */
export async function cutoversOfScope(
  store: Pick<Prisma.TransactionClient, "cohortMember">,
  planId: string,
  scope: TBreakerScope,
): Promise<Prisma.TenantCutoverWhereInput> {
  const base = { planId, status: { in: CUTOVER_IN_FLIGHT } };
  if (scope.kind === "tenants") return { ...base, tenantKey: { in: scope.tenants } };
  // A cutover of a member to a shard would add a tenant to the set, one back would take one away.
  if (scope.kind === "cohort")
    return { ...base, tenantKey: { in: await cohortMembers(store, planId, scope) } };
  if (scope.kind === "shard") {
    return { ...base, OR: [{ fromDatabaseId: scope.databaseId }, { toDatabaseId: scope.databaseId }] };
  }
  return base;
}
