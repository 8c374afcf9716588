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
    // And one the server ends while it is checked out (idle between statements, or in one): every
    // client of an engine pool hears its 'error' for its whole life, whoever checks it out.
    pool.on("connect", (client) => {
      guardClient(client);
    });
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

const guarded = new WeakSet<pg.ClientBase>();
const lost = new WeakMap<pg.ClientBase, Error>();

/**
 * A checked-out client has no pool listener: a session the server ends while the client is held
 * (pg_terminate_backend, a restart; idle between statements or inside one) emits an 'error' that,
 * unheard, is an uncaught exception and ends the worker process. Every client held across awaits
 * gets one listener, once, for its life; the next query on the broken client fails, the caller
 * fails or retries with a fresh one, and the pool does not take back a client that is no longer
 * queryable. Engine pools (enginePool) guard every client they make; other pools' clients are
 * guarded where they are checked out.
 */
export function guardClient<T extends pg.ClientBase>(client: T): T {
  if (!guarded.has(client)) {
    client.on("error", (error: Error) => {
      if (!lost.has(client)) lost.set(client, error);
    });
    guarded.add(client);
  }
  return client;
}

/** The error a guarded client heard when the server ended its session, if it did. */
export function connectionLost(client: pg.ClientBase): Error | undefined {
  return lost.get(client);
}

/** Checks a client out of `pool`, guarded (see guardClient). */
export async function checkOut(pool: pg.Pool): Promise<pg.PoolClient> {
  return guardClient(await pool.connect());
}
