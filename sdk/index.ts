// Shardshift's router SDK: route each tenant's statements to the database that owns it.
// Depends on `pg` and Node.js only (no Next.js, no Prisma). See the README, "Router SDK".
export {
  FENCE_SQLSTATES,
  RouterError,
  RoutingMapUnavailableError,
  StaleRouteError,
  TenantFrozenError,
  UnknownDatabaseError,
} from "./errors";
export {
  type HttpMapSourceOptions,
  httpMapSource,
  legacyOnlyMap,
  type MapSource,
  staticMapSource,
} from "./map-source";
export type { WireDatabase, WireRoute, WireRoutingMap } from "./map-types";
export {
  createRouter,
  type Route,
  type Router,
  type RouterOptions,
  type TenantHandle,
  type TenantId,
  type TenantQueryable,
  type TenantTransaction,
} from "./router";
