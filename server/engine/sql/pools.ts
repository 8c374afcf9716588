// One small pool per database URL for the engine, shared by every job in a worker process.
// Pools are keyed by URL, so a plan's legacy and shards are each reached through one pool.
import pg from "pg";

const pools = new Map<string, pg.Pool>();

export function enginePool(url: string, max = 6, purpose = "engine"): pg.Pool {
  const key = purpose === "engine" ? url : `${purpose}\u0000${url}`;
  let pool = pools.get(key);
  if (!pool) {
    pool = new pg.Pool({
      connectionString: url,
      max,
      application_name: `shardshift-${purpose}`,
      idleTimeoutMillis: 30_000,
      // A server that does not answer (or a pool whose clients are all taken) fails the caller
      // after this long instead of holding it — and whatever waits on it, like a cancel — forever.
      connectionTimeoutMillis: 30_000,
      keepAlive: true,
    });
    // A broken idle connection must not crash the worker; the next checkout gets a fresh one.
    pool.on("error", () => {});
    pools.set(key, pool);
  }
  return pool;
}

/**
 * The cutover runners' own pool for a database: a freeze never waits for a slot the CDC, parity or
 * fence-watch jobs hold in the shared engine pool. Sized for the scheduler's 8 attempts at once,
 * each holding at most one connection to a database at a time (its fence change, drain poll or
 * sequence pass), plus the fence syncs of the finish step.
 */
export function cutoverPool(url: string): pg.Pool {
  return enginePool(url, 12, "cutover");
}

export async function closeEnginePools(): Promise<void> {
  const all = [...pools.values()];
  pools.clear();
  await Promise.all(all.map((p) => p.end().catch(() => {})));
}

const guarded = new WeakSet<pg.PoolClient>();

/**
 * A checked-out client has no pool listener: an error between queries (a server restart) would be
 * unhandled and kill the worker. Long-held clients get one listener, once; the next query on a
 * broken client fails and the caller retries with a fresh one.
 */
export function guardClient<T extends pg.PoolClient>(client: T): T {
  if (!guarded.has(client)) {
    client.on("error", () => {});
    guarded.add(client);
  }
  return client;
}
