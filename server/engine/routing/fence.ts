// The fence inside the database (issue 12, item 3; invariant 1): legacy and every shard refuse a
// write to a tenant that is frozen there or owned by another database, whoever sends it — a router
// with a stale map, or an application that bypasses the SDK.
//
// Design:
// - Each database holds a mirror of the plan's sparse routing map (shardshift.tenant_fence) and
//   statement-level triggers on every sharded table that check each statement's distinct tenants
//   (fence-sql.ts). A tenant with no row is owned by legacy, so
//   on legacy an empty fence refuses nothing and on a shard it refuses every application write.
// - Who is exempt, and why session_replication_role: every engine writer (CDC apply in both
//   directions, the backfill copy, parity repair) already runs with session_replication_role =
//   replica — as PostgreSQL's own logical-replication apply workers do — and ordinary (ENABLE)
//   triggers do not fire in such sessions. Only a superuser (or a role granted SET on it) may set
//   it, so an application role cannot opt out, where a custom GUC anyone can SET would be a switch
//   for every application. pg_replication_origin_session_is_setup() would exempt the CDC applier
//   only (the backfill and repair carry no origin) and needs privileges inside the trigger.
// - Ordering (what the cutover relies on): syncFence takes each changing tenant's advisory lock
//   exclusively before it writes the fence; every fenced write takes the same lock shared for the
//   rest of its transaction. So when syncFence returns, every transaction that wrote the tenant
//   before the fence has ended (committed or not), and every later write sees the fence. A write
//   that meets a fence change in progress waits for it and is refused, retryably. Transactions in
//   REPEATABLE READ are caught by shardshift.fence_epoch, a sequence read outside their snapshot.
// - Stray writes: the refused transaction rolls back, so the trigger records the attempt in
//   sequences, which PostgreSQL never rolls back: a counter (exact number of refusals) and a ring
//   of 16 (the last refusals' tenant hash and reason). The engine reads both (stray-writes.ts);
//   more than 16 refusals between two reads are still counted, only their tenants are not told.
//   A write refused only because it met a fence change in progress is not counted: any router's
//   write can race a change, and the SDK retries it.
//   (A table insert, a NOTIFY or an advisory lock would all vanish with the rollback.)
// - Cost: per statement, one read of its transition table, then one index probe of a small table
//   and one shared advisory lock per distinct tenant written; measured
//   by `npm run bench` (router-sdk.ts) and reported in the README.
import pg from "pg";
import type { TableInfo } from "../analysis/introspect";
import { parseLsn } from "../cdc/slot";
import { checkOut } from "../sql/pools";
import {
  advanceFenceVersionSql,
  dropFenceSql,
  dropFenceTriggerSql,
  emitFenceMessageSql,
  fenceFunctionSql,
  fenceTriggerSql,
  installFenceSchemaSql,
  LEGACY_OWNER_KEY,
  lockTenantsForFenceChangeSql,
  readFenceStateSql,
  upsertFenceStateSql,
  upsertTenantFenceSql,
} from "./fence-sql";

export { FENCE_MESSAGE_PREFIX, FENCE_SQLSTATE, LEGACY_OWNER_KEY } from "./fence-sql";

/** Which database a fence guards: legacy ("legacy") or a shard (its database id). */
export interface FenceSelf {
  key: string;
  name: string;
}

export interface FenceInstall {
  planId: string;
  self: FenceSelf;
  legacyName: string;
  shardKeyColumn: string;
  tables: Pick<TableInfo, "qualified" | "kind">[];
  /** How long to wait for the table locks CREATE TRIGGER needs (writers hold them briefly). */
  lockTimeoutMs?: number;
}

export interface FenceRoute {
  tenantKey: string;
  /** LEGACY_OWNER_KEY or a shard's database id. */
  ownerKey: string;
  ownerName: string;
  frozen: boolean;
  version: number;
}

type Queryable = Pick<pg.ClientBase, "query">;

async function inTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await checkOut(pool);
  try {
    await client.query("begin");
    const result = await fn(client);
    await client.query("commit");
    return result;
  } catch (error) {
    await client.query("rollback").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/**
 * Creates (idempotently) the fence schema, the trigger function and one trigger per sharded table.
 * CREATE TRIGGER briefly locks each table against writes: with a lock timeout, so a long
 * transaction on the table fails the install (retry later) instead of queueing every writer.
 */
export async function installFence(pool: pg.Pool, install: FenceInstall): Promise<void> {
  const sharded = install.tables.filter((t) => t.kind === "sharded");
  const lockTimeout = `set local lock_timeout = ${Math.round(install.lockTimeoutMs ?? 2000)}`;
  try {
    await inTransaction(pool, async (client) => {
      await client.query(lockTimeout);
      await client.query(installFenceSchemaSql());
      await client.query(upsertFenceStateSql(), [
        install.planId,
        install.self.key,
        install.self.name,
        install.legacyName,
      ]);
      await client.query(fenceFunctionSql(install.shardKeyColumn));
    });
    // One table per transaction: holding one table's lock while waiting for the next one's made a
    // lock cycle with application transactions that write two tables (seen: "deadlock detected"
    // for a demo write while the fences were installed under the workload).
    for (const table of sharded) {
      await inTransaction(pool, async (client) => {
        await client.query(lockTimeout);
        await client.query(
          fenceTriggerSql(table.qualified, install.shardKeyColumn, install.self, install.legacyName),
        );
      });
    }
  } catch (error) {
    const e = error as { code?: string; message?: string };
    if (e.code === "55P03") {
      throw new Error(
        `Could not install the Shardshift fence on ${install.self.name}: a table stayed locked by another transaction for ${install.lockTimeoutMs ?? 2000} ms. Nothing was changed; try again when long transactions there have ended.`,
        { cause: error },
      );
    }
    throw new Error(`Could not install the Shardshift fence on ${install.self.name}: ${e.message}`, {
      cause: error,
    });
  }
}

/** Removes the triggers and the fence schema (clean-up, or a cancelled movement). */
export async function dropFence(
  pool: pg.Pool,
  tables: Pick<TableInfo, "qualified" | "kind">[],
  keyColumns: string[],
): Promise<void> {
  await inTransaction(pool, async (client) => {
    for (const table of tables.filter((t) => t.kind === "sharded")) {
      await client.query(dropFenceTriggerSql(table.qualified));
    }
    await client.query(dropFenceSql(keyColumns));
  });
}

export interface FenceState {
  planId: string;
  selfKey: string;
  selfName: string;
  mapVersion: number;
}

export async function readFenceState(db: Queryable): Promise<FenceState | null> {
  try {
    const { rows } = await db.query<{
      plan_id: string;
      self_key: string;
      self_name: string;
      map_version: string;
    }>(readFenceStateSql());
    const row = rows[0];
    return row
      ? {
          planId: row.plan_id,
          selfKey: row.self_key,
          selfName: row.self_name,
          mapVersion: Number(row.map_version),
        }
      : null;
  } catch (error) {
    if ((error as { code?: string }).code === "42P01") return null; // no fence installed here
    throw error;
  }
}

/** Where a fence change sits in its database's WAL. */
export interface FenceSyncResult {
  /**
   * The freeze position: the WAL insert position right after the change's logical message, read
   * while the tenants' exclusive locks were held. Every transaction that wrote those tenants
   * before the change committed below it; the change itself commits above it. A stream from this
   * database stamps every target past it once it met the change, and records it there in a row
   * only a commit leaves (the drain marker), so waitForOriginProgress(target, origin, lsn) is the
   * cutover's drain (drain.ts).
   */
  lsn: bigint;
}

/**
 * Writes routes into this database's fence and raises its version to `version`. The lock of each
 * changing tenant the change restricts here (frozen, or owned elsewhere) is taken exclusively
 * first, so this returns only once every transaction that wrote one of them before has ended. Fails (nothing changed) when that takes longer
 * than `lockTimeoutMs` — the cutover's budget — naming the database.
 *
 * In the same transaction, the change is written into the WAL as a transactional logical message
 * (FENCE_MESSAGE_PREFIX): streams reading this database change ownership at exactly that point of
 * the commit order (ownership-route.ts). Returns the freeze position (FenceSyncResult).
 */
export async function syncFence(
  pool: pg.Pool,
  input: {
    planId: string;
    databaseName: string;
    routes: readonly FenceRoute[];
    version: number;
    lockTimeoutMs?: number;
    /**
     * Called once the changing tenants' locks are held (the cutover starts its freeze clock there);
     * the change is written when it returns (a test hook may hold it there).
     */
    onLocked?: () => void | Promise<void>;
    /**
     * A mover's own tenants: only these are waited out (their exclusive locks taken); the other
     * routes are written without waiting. Without it, every route that restricts writes here is.
     * Why: a cutover's fence change carries every route changed since the fence's version — the
     * other cutovers' frozen tenants too — and waited for those tenants' writes in flight as well
     * as its own. Their own movers wait for them, for their own freeze positions; writes that
     * began before a route's row is written were allowed, and those after it are refused.
     */
    lockOnly?: readonly string[];
  },
): Promise<FenceSyncResult> {
  const routes = input.routes;
  const waited = input.lockOnly ? new Set(input.lockOnly) : null;
  const locking = waited ? routes.filter((r) => waited.has(r.tenantKey)) : routes;
  // One or two round trips, not seven: the statements go as simple-query scripts with their values
  // as literals. Every fence change on a database that raises its version updates its one
  // fence_state row, so each change queued behind the one holding that row for as long as its
  // client took to send the message, the position read and the commit, one round trip at a time
  // (under eight cutovers at once on a loaded machine, most of a freeze). Now the row is held for
  // the server's own execution of the last script. With `onLocked` (the cutover's freeze clock
  // starts when the locks are held) the lock wait is a script of its own; without it, one script.
  const keys = routes.map((r) => r.tenantKey);
  const lock = [
    "begin",
    `set local lock_timeout = ${Math.round(input.lockTimeoutMs ?? 5000)}`,
    ...(locking.length > 0
      ? [
          withLiterals(lockTenantsForFenceChangeSql(), [
            locking.map((r) => r.tenantKey),
            locking.map((r) => r.ownerKey),
            locking.map((r) => r.frozen),
          ]),
        ]
      : []),
  ];
  const change = [
    ...(routes.length > 0
      ? [
          withLiterals(upsertTenantFenceSql(), [
            keys,
            routes.map((r) => r.ownerKey),
            routes.map((r) => r.ownerName),
            routes.map((r) => r.frozen),
            routes.map((r) => String(r.version)),
          ]),
        ]
      : []),
    withLiterals(advanceFenceVersionSql(), [String(input.version), input.planId]),
    // Last, after the locks and the rows: the message's position is the change's place in the
    // commit order, and the position read after it bounds every earlier write of these tenants.
    withLiterals(emitFenceMessageSql(), [input.planId, String(input.version), keys]),
    "commit",
  ];
  const client = await pool.connect();
  // The session may end while the client is checked out and idle (below): heard here, not as an
  // uncaught 'error' that would end the process; such a client is not given back to the pool.
  let lost: Error | null = null;
  const onLost = (error: Error) => {
    lost ??= error;
  };
  client.on("error", onLost);
  try {
    let script = change;
    if (input.onLocked) {
      // Between the two scripts this transaction sits idle holding the tenants' locks exclusively,
      // and every writer of them waits. Bounded by the server, not by this client: a worker that
      // stalls there (a stopped process, a host gone without closing its sockets) loses the session
      // once it idled as long as the lock wait may take, and the writers go on (found by
      // break-stalled-fence.test.ts: without it they waited as long as the stall).
      const idle = Math.max(1_000, Math.round(input.lockTimeoutMs ?? 5000));
      await client.query([...lock, `set local idle_in_transaction_session_timeout = ${idle}`].join(";\n"));
      await input.onLocked();
    } else {
      script = [...lock, ...change];
    }
    const results = (await client.query(script.join(";\n"))) as unknown as pg.QueryResult<{ lsn?: string }>[];
    const emitted = results[script.length - 2]?.rows[0]?.lsn;
    return { lsn: parseLsn(emitted ?? "0/0") };
  } catch (error) {
    // A rollback that fails means the session is gone: the client is not given back to the pool.
    await client.query("rollback").catch((failed: Error) => onLost(failed));
    const e = error as { code?: string; message?: string };
    if (e.code === "55P03") {
      throw new Error(
        `The fence on ${input.databaseName} could not be changed within ${input.lockTimeoutMs ?? 5000} ms: transactions writing ${routes.length === 1 ? `tenant ${routes[0]?.tenantKey}` : "these tenants"} did not end. Nothing was changed there; the next attempt retries.`,
        { cause: error },
      );
    }
    throw error;
  } finally {
    client.off("error", onLost);
    client.release(lost ?? undefined);
  }
}

/** A PostgreSQL array literal of `values` (cast by the statement: `$1::text[]`). */
function arrayLiteral(values: readonly (string | boolean)[]): string {
  return `{${values.map((v) => `"${String(v).replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`).join(",")}}`;
}

/** `sql` with each `$n` replaced by the quoted literal of `args[n - 1]` (a value or an array). */
export function withLiterals(sql: string, args: readonly (string | readonly (string | boolean)[])[]): string {
  return sql.replace(/\$(\d+)/g, (_, n: string) => {
    const arg = args[Number(n) - 1];
    if (arg === undefined) throw new Error(`no value for $${n}`);
    return pg.escapeLiteral(typeof arg === "string" ? arg : arrayLiteral(arg));
  });
}

/** A route as the fence of every database stores it (owner by key and name). */
export function fenceRouteOf(
  route: { tenantKey: string; ownerDatabaseId: string | null; frozen: boolean; version: number },
  names: { legacyName: string; shardNames: ReadonlyMap<string, string> },
): FenceRoute {
  const ownerKey = route.ownerDatabaseId ?? LEGACY_OWNER_KEY;
  return {
    tenantKey: route.tenantKey,
    ownerKey,
    ownerName:
      route.ownerDatabaseId === null
        ? names.legacyName
        : (names.shardNames.get(route.ownerDatabaseId) ?? route.ownerDatabaseId),
    frozen: route.frozen,
    version: route.version,
  };
}
