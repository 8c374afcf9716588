// The routing map as it travels over HTTP (GET /api/routing/map). Shared by the server, which
// writes it, and the SDK, which reads it: one definition, no dependencies.
//
// Full or delta: without `since` the answer lists every tenant that has a route (the map is sparse:
// a tenant not listed is owned by legacy and not frozen); with `since=V` it lists only the routes
// changed after version V (`delta: true`). Routes are never removed from the store, so a delta is
// exact: a tenant moved back to legacy is listed with owner legacy.

/** A database a tenant can be owned by, named as it is registered in Shardshift. */
export interface WireDatabase {
  id: string;
  name: string;
  kind: "legacy" | "shard";
}

export interface WireRoute {
  /** The shard key's text, e.g. "42". */
  tenant: string;
  /** The owner's registered database name (legacy's name for legacy). */
  owner: string;
  ownerId: string;
  frozen: boolean;
  /** The map version of this route's last change. */
  version: number;
}

export interface WireRoutingMap {
  planId: string;
  version: number;
  /** True when `tenants` lists only the routes changed after `since`. */
  delta: boolean;
  since: number | null;
  /** How long a write for a frozen tenant may wait before it fails (the plan's freeze budget). */
  freezeBudgetMs: number;
  legacy: WireDatabase;
  databases: WireDatabase[];
  tenants: WireRoute[];
}

/** The ETag the server gives a map of this plan and version (and expects back in If-None-Match). */
export function routingMapEtag(version: number): string {
  return `"map-${version}"`;
}

export function versionOfEtag(etag: string | null): number | null {
  const match = /^(?:W\/)?"map-(\d{1,15})"$/.exec(etag?.trim() ?? "");
  return match ? Number(match[1]) : null;
}
