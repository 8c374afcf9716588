// A plan's fences as a whole: install them on legacy and every shard, bring each up to the routing
// map, and collect the stray writes they refused. Engine code: the store through db(), databases
// through plain pg; the fence watch (fence-watch.ts) runs these every second in each worker, and
// the cutover (next) calls syncPlanFences at its own steps with its budget.
import type pg from "pg";
import type { SourceSchema } from "../analysis/introspect";
import { enginePool } from "../sql/pools";
import { db } from "../store/db";
import { registeredUrl } from "../store/movement-context";
import {
  type FenceRoute,
  fenceRouteOf,
  installFence,
  LEGACY_OWNER_KEY,
  readFenceState,
  syncFence,
} from "./fence";
import { readStrayCountersSql, STRAY_RING_SIZE, tenantsByHashSql } from "./fence-sql";
import { CDC_STRAY_REASON, decodeStrayWrites } from "./stray-writes";

export interface FencedDatabase {
  databaseId: string;
  name: string;
  /** LEGACY_OWNER_KEY for legacy, the database id for a shard. */
  key: string;
  pool: pg.Pool;
}

export interface PlanFences {
  planId: string;
  schema: SourceSchema;
  legacy: FencedDatabase;
  shards: FencedDatabase[];
  all: FencedDatabase[];
}

/** `poolOf`: how to reach each database (default: the engine's shared pool; the cutover passes its own). */
export async function loadPlanFences(
  planId: string,
  poolOf: (url: string) => pg.Pool = enginePool,
): Promise<PlanFences> {
  // One read (the URLs' ciphertexts with the rows): the breaker loads this on the path from the
  // click to the freeze.
  const database = { select: { id: true, name: true, urlCiphertext: true } } as const;
  const plan = await db().plan.findUnique({
    where: { id: planId },
    select: {
      sourceDatabase: database,
      shards: { orderBy: { ordinal: "asc" }, select: { database } },
      movement: { select: { sourceSchema: true } },
    },
  });
  if (!plan) throw new Error(`Plan ${planId} does not exist.`);
  if (!plan.movement) {
    throw new Error(
      "The fences guard the plan's sharded tables, known once its data movement has started: start it (Backfill & CDC) first.",
    );
  }
  const fenced = (d: { id: string; name: string; urlCiphertext: string }, key: string): FencedDatabase => ({
    databaseId: d.id,
    name: d.name,
    key,
    pool: poolOf(registeredUrl(d.id, d.urlCiphertext)),
  });
  const legacy = fenced(plan.sourceDatabase, LEGACY_OWNER_KEY);
  const shards = plan.shards.map(({ database: d }) => fenced(d, d.id));
  return {
    planId,
    schema: plan.movement.sourceSchema as unknown as SourceSchema,
    legacy,
    shards,
    all: [legacy, ...shards],
  };
}

/**
 * Installs the fence on legacy and every shard (idempotent), then brings each up to the map, and
 * records when. Legacy first: it is the only database applications write to before any cutover.
 */
export async function installPlanFences(fences: PlanFences): Promise<void> {
  for (const target of fences.all) {
    await installFence(target.pool, {
      planId: fences.planId,
      self: { key: target.key, name: target.name },
      legacyName: fences.legacy.name,
      shardKeyColumn: fences.schema.shardKeyColumn,
      tables: fences.schema.tables,
    });
  }
  await db().routingMap.upsert({
    where: { planId: fences.planId },
    create: { planId: fences.planId, fenceInstalledAt: new Date() },
    update: { fenceInstalledAt: new Date() },
  });
  await syncPlanFences(fences);
}

/**
 * The map's routes changed after `since`, as fences store them, and the map's version: one
 * statement, so one snapshot sees both (no interactive transaction to queue for on a busy pool).
 */
async function routesSince(
  fences: PlanFences,
  since: number,
): Promise<{ version: number; routes: FenceRoute[] }> {
  const rows = await db().$queryRaw<
    {
      map_version: bigint | null;
      tenant_key: string | null;
      owner: string | null;
      frozen: boolean | null;
      version: bigint | null;
    }[]
  >`
    select m.version as map_version, r.tenant_key, r.owner_database_id::text as owner, r.frozen, r.version
    from (select coalesce((select version from routing_map where plan_id = ${fences.planId}::uuid), 0) as version) m
    left join tenant_route r on r.plan_id = ${fences.planId}::uuid and r.version > ${BigInt(since)}`;
  const names = {
    legacyName: fences.legacy.name,
    shardNames: new Map(fences.shards.map((s) => [s.databaseId, s.name])),
  };
  return {
    version: Number(rows[0]?.map_version ?? 0n),
    routes: rows.flatMap((r) =>
      r.tenant_key === null
        ? []
        : [
            fenceRouteOf(
              {
                tenantKey: r.tenant_key,
                ownerDatabaseId: r.owner,
                frozen: r.frozen ?? false,
                version: Number(r.version ?? 0n),
              },
              names,
            ),
          ],
    ),
  };
}

export interface FenceSyncOutcome {
  database: string;
  from: number;
  to: number;
  /** The freeze position of the change written there (syncFence); absent when nothing changed. */
  lsn?: bigint;
  error?: string;
  /** The database did not answer within the caller's answerWithinMs (the sync goes on by itself). */
  unanswered?: boolean;
}

/**
 * Brings every database's fence up to the routing map: each gets the routes changed after the
 * version it holds. Databases are synced in parallel; one that fails is reported, not thrown, so
 * the others still get the change (the watch retries it next second).
 */
export async function syncPlanFences(
  fences: PlanFences,
  options: {
    lockTimeoutMs?: number;
    only?: readonly FencedDatabase[];
    onLocked?: () => void | Promise<void>;
    /** A mover's own tenants, the only ones waited out (syncFence's lockOnly). */
    lockOnly?: readonly string[];
    /**
     * How long each database has to answer (ms): past it, its outcome is an error with `unanswered`
     * set and its sync is left to end by itself (it is not cancelled: a hung server answers nothing,
     * a cancel included). Without it, no bound.
     */
    answerWithinMs?: number;
  } = {},
): Promise<FenceSyncOutcome[]> {
  const targets = options.only ?? fences.all;
  const bounded = (target: FencedDatabase, work: Promise<FenceSyncOutcome>): Promise<FenceSyncOutcome> => {
    const ms = options.answerWithinMs;
    if (ms === undefined) return work;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<FenceSyncOutcome>((resolve) => {
      timer = setTimeout(
        () =>
          resolve({
            database: target.name,
            from: -1,
            to: -1,
            error: `did not answer within ${ms / 1000} s`,
            unanswered: true,
          }),
        ms,
      );
    });
    return Promise.race([work, late]).finally(() => clearTimeout(timer));
  };
  return Promise.all(targets.map((target) => bounded(target, syncOne(target))));
  async function syncOne(target: FencedDatabase): Promise<FenceSyncOutcome> {
    let from = -1;
    try {
      const state = await readFenceState(target.pool);
      if (!state || state.planId !== fences.planId) {
        return { database: target.name, from, to: from, error: "no fence of this plan is installed there" };
      }
      from = state.mapVersion;
      const { version, routes } = await routesSince(fences, from);
      if (version <= from) return { database: target.name, from, to: from };
      const { lsn } = await syncFence(target.pool, {
        planId: fences.planId,
        databaseName: target.name,
        routes,
        version,
        lockTimeoutMs: options.lockTimeoutMs,
        onLocked: options.onLocked,
        lockOnly: options.lockOnly,
      });
      return { database: target.name, from, to: version, lsn };
    } catch (error) {
      return { database: target.name, from, to: from, error: (error as Error).message };
    }
  }
}

/** Hash → tenant key, for the tenants this plan knows of (routes, census, the fence's rows). */
async function tenantsByHash(fences: PlanFences, target: FencedDatabase, hashes: number[]) {
  const found = new Map<number, string>();
  if (hashes.length === 0) return found;
  const { rows } = await target.pool.query<{ tenant_key: string; h: number }>(tenantsByHashSql(), [hashes]);
  for (const row of rows) found.set(row.h, row.tenant_key);
  const missing = hashes.filter((h) => !found.has(h));
  if (missing.length > 0) {
    const known = await db().$queryRaw<{ tenant_key: string; h: number }[]>`
      select tenant_key, hashtext(tenant_key) as h from (
        select tenant_key from tenant_route where plan_id = ${fences.planId}::uuid
        union select distinct tenant_key from tenant_census where plan_id = ${fences.planId}::uuid
      ) k where hashtext(tenant_key) = any(${missing}::int[])`;
    for (const row of known) found.set(row.h, row.tenant_key);
  }
  return found;
}

/**
 * Reads each database's refusal counters and records what is new as stray writes of the plan.
 * Idempotent (a ticket is recorded once), so two workers doing it at once record nothing twice.
 * Returns how many refusals were recorded.
 */
export async function collectStrayWrites(fences: PlanFences): Promise<number> {
  let recorded = 0;
  for (const target of fences.all) {
    const state = await readFenceState(target.pool).catch(() => null);
    if (!state || state.planId !== fences.planId) continue;
    const { rows } = await target.pool.query<Record<string, string | null>>(readStrayCountersSql());
    const row = rows[0];
    if (!row) continue;
    const counter = BigInt(row.ticket ?? "0");
    const ring = Array.from({ length: STRAY_RING_SIZE }, (_, i) => {
      const value = row[`r${i}`];
      return value == null ? null : BigInt(value);
    });
    const last = await db().strayWrite.findFirst({
      // Forward CDC's own reports are numbered by commit LSN, not by this counter (cdc-strays.ts).
      where: { planId: fences.planId, databaseId: target.databaseId, reason: { not: CDC_STRAY_REASON } },
      orderBy: { ticket: "desc" },
      select: { ticket: true },
    });
    // A counter below what we saw means the fence was dropped and installed again: start over.
    const lastSeen = last && last.ticket <= counter ? last.ticket : 0n;
    const refusals = decodeStrayWrites(lastSeen, counter, ring);
    if (refusals.length === 0) continue;
    const names = await tenantsByHash(
      fences,
      target,
      refusals.flatMap((r) => (r.tenantHash === null ? [] : [r.tenantHash])),
    );
    const created = await db().strayWrite.createMany({
      data: refusals.map((r) => ({
        planId: fences.planId,
        databaseId: target.databaseId,
        databaseName: target.name,
        tenantKey:
          r.tenantHash === null ? null : (names.get(r.tenantHash) ?? `unknown (hash ${r.tenantHash})`),
        reason: r.reason,
        ticket: r.ticket,
        count: r.count,
      })),
      skipDuplicates: true,
    });
    recorded += created.count;
  }
  return recorded;
}
