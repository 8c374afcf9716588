// Errors the router SDK throws. Each says what happened and what to do; `retryable` tells a caller
// whether running the same write again (after the map moved on) is the right answer.

export class RouterError extends Error {
  readonly retryable: boolean;
  readonly tenant: string | null;

  constructor(message: string, options: { retryable: boolean; tenant?: string | null; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.name = "RouterError";
    this.retryable = options.retryable;
    this.tenant = options.tenant ?? null;
  }
}

/**
 * The tenant's writes are frozen (a cutover or rollback is moving it) and stayed frozen for the
 * whole freeze budget, or its database refused a write while frozen. Nothing was written. Retry:
 * a freeze lasts at most its budget, after which the tenant is writable on its (possibly new) owner.
 */
export class TenantFrozenError extends RouterError {
  readonly waitedMs: number;
  readonly mapVersion: number;

  constructor(tenant: string, waitedMs: number, mapVersion: number, options: { cause?: unknown } = {}) {
    super(
      `Tenant ${tenant} is frozen for a move between databases (routing map version ${mapVersion}); waited ${Math.round(waitedMs)} ms, the freeze budget, and wrote nothing. Retry the write: the freeze ends within its budget.`,
      { retryable: true, tenant, cause: options.cause },
    );
    this.name = "TenantFrozenError";
    this.waitedMs = waitedMs;
    this.mapVersion = mapVersion;
  }
}

/**
 * The tenant's route changed while a transaction was open on its old owner (or the database said it
 * is not the owner): the transaction was rolled back before COMMIT. Retry it: it goes to the new owner.
 */
export class StaleRouteError extends RouterError {
  readonly pinnedVersion: number;
  readonly currentVersion: number;

  constructor(
    tenant: string,
    pinnedVersion: number,
    currentVersion: number,
    detail: string,
    options: { cause?: unknown } = {},
  ) {
    super(
      `Tenant ${tenant}'s route changed (${detail}; map version ${pinnedVersion} → ${currentVersion}); the transaction was rolled back and nothing was written. Retry it: it goes to the tenant's current owner.`,
      { retryable: true, tenant, cause: options.cause },
    );
    this.name = "StaleRouteError";
    this.pinnedVersion = pinnedVersion;
    this.currentVersion = currentVersion;
  }
}

/** The map names an owner this router has no connection for: a configuration error, not retryable. */
export class UnknownDatabaseError extends RouterError {
  constructor(tenant: string, owner: string, known: string[]) {
    super(
      `Tenant ${tenant} is owned by "${owner}", and this router has no connection for it (it has: ${known.join(", ") || "none"}). Add "${owner}" to the router's databases, named as it is registered in Shardshift.`,
      { retryable: false, tenant },
    );
    this.name = "UnknownDatabaseError";
  }
}

/** The routing map could not be read (first load): the router cannot route anything yet. */
export class RoutingMapUnavailableError extends RouterError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { retryable: true, cause: options.cause });
    this.name = "RoutingMapUnavailableError";
  }
}

/** SQLSTATEs Shardshift's in-database fence raises (see the README: "The fence"). */
export const FENCE_SQLSTATES = { frozen: "SS001", notOwner: "SS002" } as const;
