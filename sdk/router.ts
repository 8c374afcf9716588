// The router applications use instead of a raw pool: each tenant's statements go to the database
// that owns the tenant in the routing map the router holds.
//
// Design:
// - One pg.Pool per database, keyed by the database's name as registered in Shardshift.
// - The map is followed in the background (long-poll through a MapSource); it is sparse: a tenant
//   it does not list is owned by legacy and not frozen. Each route carries the map version of its
//   last change.
// - Invariant: a statement is sent only to the owner of the tenant in the map the router holds at
//   that moment. A transaction pins the tenant's route when it begins; before every statement and
//   before COMMIT the route is checked again, and if it changed the transaction is rolled back and
//   StaleRouteError (retryable) thrown — nothing is committed on a database that stopped being the
//   owner. (The database's own fence is the second line: it refuses what a stale router sends.)
// - A write for a frozen tenant waits for the freeze to lift, up to the freeze budget, then throws
//   TenantFrozenError (retryable). A single statement refused by the fence (the database learned of
//   a freeze or a flip before this router did) is retried once the map moves, within the budget:
//   the refused statement rolled back, so running it again cannot write twice.
// - The per-query cost is a Map lookup and a few comparisons on top of pool.query.
import pg from "pg";
import {
  FENCE_SQLSTATES,
  RouterError,
  RoutingMapUnavailableError,
  StaleRouteError,
  TenantFrozenError,
  UnknownDatabaseError,
} from "./errors";
import type { MapSource } from "./map-source";
import type { WireRoutingMap } from "./map-types";

export type TenantId = string | number | bigint;

export interface Route {
  owner: string;
  frozen: boolean;
  /** Map version of the route's last change (0: never changed, on legacy). */
  version: number;
}

export interface RouterOptions {
  /** A pool, or a pool's config, per database, keyed by the name it is registered under in Shardshift. */
  databases: Record<string, pg.Pool | pg.PoolConfig>;
  map: MapSource;
  /** Overrides the plan's freeze budget (ms): how long a write for a frozen tenant may wait. */
  freezeBudgetMs?: number;
  /** Called when following the map fails (the router keeps its last map and retries). */
  onMapError?: (error: unknown) => void;
}

export interface TenantQueryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string | pg.QueryConfig,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>>;
}

export interface TenantTransaction extends TenantQueryable {
  readonly tenant: string;
  /** The database the transaction runs on. */
  readonly owner: string;
  /** The tenant's route version pinned for the transaction. */
  readonly routeVersion: number;
}

export interface TenantHandle extends TenantQueryable {
  readonly tenant: string;
  /** BEGIN … COMMIT on the tenant's owner; rolled back if `fn` throws or the route changes. */
  transaction<T>(fn: (tx: TenantTransaction) => Promise<T>): Promise<T>;
}

export interface Router {
  forTenant(tenant: TenantId): TenantHandle;
  /** The route this router holds for a tenant. */
  route(tenant: TenantId): Route;
  /** The map version this router holds. */
  readonly version: number;
  /** Legacy's name in the map (the owner of every tenant the map does not list). */
  readonly legacyDatabase: string;
  /** A database's pool, for statements that belong to no tenant (reference tables, reports). */
  pool(database: string): pg.Pool;
  /** Resolves once the router holds `version` or newer; rejects after `timeoutMs`. */
  waitForVersion(version: number, timeoutMs?: number): Promise<void>;
  /** Stops following the map and ends the pools this router created (not those passed in). */
  close(): Promise<void>;
}

const FOLLOW_BACKOFF_MS = [250, 500, 1000, 2000, 5000];
/**
 * First pause before a statement refused by a fence that is behind our map is sent again (doubling,
 * at most 200 ms; see routeAfterRefusal). Not shorter: a router whose map is behind the fence looks
 * the same until its map moves, which ends the pause at once, and every refusal counts as a stray.
 */
const FENCE_BEHIND_RETRY_MS = 20;

function isPool(value: pg.Pool | pg.PoolConfig): value is pg.Pool {
  return value instanceof pg.Pool || typeof (value as { connect?: unknown }).connect === "function";
}

function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * The map version of the fence row that refused a statement (its DETAIL says `map_version=N`, see
 * fence-sql.ts), or null when the refusal does not say (a fence change in progress).
 */
function refusingFenceVersion(error: unknown): number | null {
  const detail = (error as { detail?: unknown } | null)?.detail;
  if (typeof detail !== "string") return null;
  const found = /map_version=(\d+) stray_write=\d*$/.exec(detail);
  return found ? Number(found[1]) : null;
}

/** Connects to the map (first load) and returns a router that follows it. */
export async function createRouter(options: RouterOptions): Promise<Router> {
  const pools = new Map<string, pg.Pool>();
  const owned: pg.Pool[] = [];
  for (const [name, value] of Object.entries(options.databases)) {
    if (isPool(value)) {
      pools.set(name, value);
    } else {
      const pool = new pg.Pool(value);
      // An idle connection dropped by the server must not crash the application.
      pool.on("error", () => {});
      pools.set(name, pool);
      owned.push(pool);
    }
  }

  const abort = new AbortController();
  let first: WireRoutingMap;
  try {
    first = await options.map.load(abort.signal);
  } catch (error) {
    await Promise.all(owned.map((p) => p.end().catch(() => {})));
    throw error instanceof RoutingMapUnavailableError
      ? error
      : new RoutingMapUnavailableError(`Could not load the routing map: ${(error as Error).message}`, {
          cause: error,
        });
  }

  let version = first.version;
  let legacyName = first.legacy.name;
  let freezeBudgetMs = options.freezeBudgetMs ?? first.freezeBudgetMs;
  const routes = new Map<string, Route>();
  const legacyRoute = (): Route => ({ owner: legacyName, frozen: false, version: 0 });
  // Everyone waiting for the map to move (frozen writes, waitForVersion) is woken on each change.
  let changed: { promise: Promise<void>; resolve: () => void };
  const newChangeSignal = () => {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    changed = { promise, resolve };
  };
  newChangeSignal();

  const applyMap = (map: WireRoutingMap) => {
    if (map.version < version) return; // an answer older than what we hold (a slow response)
    if (!map.delta) routes.clear();
    for (const r of map.tenants)
      routes.set(r.tenant, { owner: r.owner, frozen: r.frozen, version: r.version });
    version = map.version;
    legacyName = map.legacy.name;
    freezeBudgetMs = options.freezeBudgetMs ?? map.freezeBudgetMs;
    const wake = changed.resolve;
    newChangeSignal();
    wake();
  };
  applyMap(first);

  const follow = async () => {
    let failures = 0;
    while (!abort.signal.aborted) {
      try {
        const next = await options.map.next(version, abort.signal);
        if (next) applyMap(next);
        failures = 0;
      } catch (error) {
        if (abort.signal.aborted) return;
        options.onMapError?.(error);
        const delay = FOLLOW_BACKOFF_MS[Math.min(failures, FOLLOW_BACKOFF_MS.length - 1)] ?? 5000;
        failures++;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  };
  const following = follow();

  const routeOf = (tenant: string): Route => routes.get(tenant) ?? legacyRoute();

  const poolOf = (tenant: string, owner: string): pg.Pool => {
    const pool = pools.get(owner);
    if (!pool) throw new UnknownDatabaseError(tenant, owner, [...pools.keys()]);
    return pool;
  };

  /** Waits until the map moves past what it was, or until `deadline`; false if the deadline came first. */
  const waitForChange = async (deadline: number): Promise<boolean> => {
    const left = deadline - performance.now();
    if (left <= 0) return false;
    let timer: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      changed.promise.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), left);
      }),
    ]);
    clearTimeout(timer);
    return outcome;
  };

  /** The tenant's route once it is not frozen; TenantFrozenError after the freeze budget. */
  const writableRoute = async (tenant: string, startedAt: number): Promise<Route> => {
    const deadline = startedAt + freezeBudgetMs;
    for (;;) {
      const route = routeOf(tenant);
      if (!route.frozen) return route;
      if (!(await waitForChange(deadline))) {
        throw new TenantFrozenError(tenant, performance.now() - startedAt, version);
      }
    }
  };

  const fenceError = (
    tenant: string,
    error: unknown,
    pinned: Route,
    startedAt: number,
  ): RouterError | null => {
    const state = sqlState(error);
    if (state === FENCE_SQLSTATES.frozen) {
      return new TenantFrozenError(tenant, performance.now() - startedAt, version, { cause: error });
    }
    if (state === FENCE_SQLSTATES.notOwner) {
      return new StaleRouteError(
        tenant,
        pinned.version,
        routeOf(tenant).version,
        `${pinned.owner} refused it as not the owner`,
        {
          cause: error,
        },
      );
    }
    return null;
  };

  /**
   * After the database's fence refused a statement: the statement rolled back. Usually the fence is
   * ahead of our map, so wait for the map to move (within the budget) and return the tenant's route
   * then, never sending it straight back. But when the refusing fence row is OLDER than our route
   * (its map version, from the refusal's detail, below the route's) and our map still names that
   * database as the writable owner, the FENCE is behind the map: a cutover's flip unfreezes the
   * tenant on the map with the new owner, and the new owner's fence opens one round trip later.
   * The map will not move again, so the route is tried again after a short pause (growing with
   * `refusals`; the map moving ends it early) until the budget is spent.
   */
  const routeAfterRefusal = async (
    tenant: string,
    refusedOn: Route,
    error: RouterError,
    startedAt: number,
    refusals: number,
  ) => {
    const deadline = startedAt + freezeBudgetMs;
    const now = routeOf(tenant);
    const fenceVersion = refusingFenceVersion(error.cause);
    const fenceBehind = fenceVersion !== null && fenceVersion < refusedOn.version;
    if (fenceBehind && now.version === refusedOn.version && now.owner === refusedOn.owner && !now.frozen) {
      const left = deadline - performance.now();
      if (left <= 0) throw error;
      await waitForChange(performance.now() + Math.min(FENCE_BEHIND_RETRY_MS * 2 ** refusals, 200, left));
      return routeOf(tenant);
    }
    let next = now;
    while (next.version === refusedOn.version && (await waitForChange(deadline))) next = routeOf(tenant);
    if (next.version === refusedOn.version) throw error;
    return next;
  };

  const runStatement = async <R extends pg.QueryResultRow>(
    tenant: string,
    text: string | pg.QueryConfig,
    values: unknown[] | undefined,
    refused?: { route: Route; error: unknown },
  ): Promise<pg.QueryResult<R>> => {
    const startedAt = performance.now();
    let route = routeOf(tenant);
    let refusals = 0;
    if (refused) {
      const error = fenceError(tenant, refused.error, refused.route, startedAt);
      if (!error) throw refused.error;
      route = await routeAfterRefusal(tenant, refused.route, error, startedAt, refusals++);
    }
    for (;;) {
      if (route.frozen) route = await writableRoute(tenant, startedAt);
      const pool = poolOf(tenant, route.owner);
      try {
        return await (values === undefined ? pool.query<R>(text) : pool.query<R>(text as string, values));
      } catch (error) {
        const refusal = fenceError(tenant, error, route, startedAt);
        if (!refusal) throw error;
        route = await routeAfterRefusal(tenant, route, refusal, startedAt, refusals++);
      }
    }
  };

  const forTenant = (id: TenantId): TenantHandle => {
    const tenant = String(id);
    return {
      tenant,
      // The common case inline (route known, not frozen, pool configured): one Map lookup and the
      // pool's own query; anything else, and any fence refusal, goes the careful way.
      query<R extends pg.QueryResultRow>(text: string | pg.QueryConfig, values?: unknown[]) {
        const route = routes.get(tenant) ?? legacyRoute();
        const pool = route.frozen ? undefined : pools.get(route.owner);
        if (!pool) return runStatement<R>(tenant, text, values);
        const sent = values === undefined ? pool.query<R>(text) : pool.query<R>(text as string, values);
        return sent.catch((error: unknown) => {
          const state = sqlState(error);
          if (state !== FENCE_SQLSTATES.frozen && state !== FENCE_SQLSTATES.notOwner) throw error;
          // Sent again only once the map moved: never straight back to the database that refused it.
          return runStatement<R>(tenant, text, values, { route, error });
        });
      },
      async transaction(fn) {
        const startedAt = performance.now();
        const pinned = await writableRoute(tenant, startedAt);
        const client = await poolOf(tenant, pinned.owner).connect();
        let broken = false;
        // pg-pool removes its idle 'error' listener while a client is checked out, and pg emits
        // 'error' on the client when its server goes away (a crash, a restart, a terminated
        // session) — besides failing the pending query. Unheard, that is an uncaught exception
        // that kills the application's process; heard, the transaction fails with the
        // connection error and the client is discarded, not returned to the pool.
        const onLost = () => {
          broken = true;
        };
        client.on("error", onLost);
        const checkPinned = () => {
          const now = routeOf(tenant);
          if (now.version !== pinned.version) {
            throw new StaleRouteError(
              tenant,
              pinned.version,
              now.version,
              `${pinned.owner} → ${now.owner}${now.frozen ? " (frozen)" : ""}`,
            );
          }
        };
        const tx: TenantTransaction = {
          tenant,
          owner: pinned.owner,
          routeVersion: pinned.version,
          async query<R extends pg.QueryResultRow>(text: string | pg.QueryConfig, values?: unknown[]) {
            checkPinned();
            try {
              return await (values === undefined
                ? client.query<R>(text)
                : client.query<R>(text as string, values));
            } catch (error) {
              throw fenceError(tenant, error, pinned, startedAt) ?? error;
            }
          },
        };
        try {
          await client.query("begin");
          const result = await fn(tx);
          checkPinned();
          await client.query("commit");
          return result;
        } catch (error) {
          await client.query("rollback").catch(() => {
            broken = true;
          });
          throw fenceError(tenant, error, pinned, startedAt) ?? error;
        } finally {
          client.off("error", onLost);
          client.release(broken);
        }
      },
    };
  };

  return {
    forTenant,
    route: (tenant) => routeOf(String(tenant)),
    get version() {
      return version;
    },
    get legacyDatabase() {
      return legacyName;
    },
    pool(database) {
      const pool = pools.get(database);
      if (!pool)
        throw new RouterError(
          `This router has no database named "${database}" (it has: ${[...pools.keys()].join(", ")}).`,
          { retryable: false },
        );
      return pool;
    },
    async waitForVersion(wanted, timeoutMs = 10_000) {
      const deadline = performance.now() + timeoutMs;
      while (version < wanted) {
        if (!(await waitForChange(deadline))) {
          throw new RouterError(
            `The router still holds map version ${version} after ${timeoutMs} ms, not ${wanted}.`,
            {
              retryable: true,
            },
          );
        }
      }
    },
    async close() {
      abort.abort();
      await following;
      await Promise.all(owned.map((p) => p.end().catch(() => {})));
    },
  };
}
