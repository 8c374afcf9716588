// The fence inside the database, on real servers: legacy and a shard refuse writes to tenants they
// do not own or that are frozen, whoever sends them; engine sessions (session_replication_role =
// replica) pass; refusals are recorded as stray writes of the plan although their transactions
// rolled back; a fence change waits for the writes in flight to its tenants.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRouter, type MapSource } from "../../../sdk";
import type { WireRoutingMap } from "../../../sdk/map-types";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { systemActor } from "../../services/actor";
import {
  changeTenantRoutes,
  installFences,
  readRoutingMapSnapshot,
  routingSummary,
} from "../../services/routing/routing";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startMovementOn } from "../../testing/movement-fixture";
import { waitFor } from "../../testing/worker-process";
import { readFenceState, syncFence } from "./fence";
import { collectStrayWrites, loadPlanFences } from "./plan-fences";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
let planId: string;
let shard0Id: string;
const actor = systemActor("fence-test", "engineer@test");

function shard(ordinal: number): TestDatabase {
  const found = shards[ordinal];
  if (!found) throw new Error(`no shard ${ordinal}`);
  return found;
}

const INSERT_EVENT = `insert into events (tenant_id, kind, payload, created_at) values ($1, 'test', '{}', now())`;

async function refusal(pool: pg.Pool | pg.PoolClient, sql: string, values: unknown[] = []) {
  return pool.query(sql, values).then(
    () => null,
    (error: { code?: string; message: string }) => error,
  );
}

/** An engine-style write: session_replication_role = replica, as CDC apply, the backfill and repair run. */
async function asEngine(pool: pg.Pool, sql: string, values: unknown[] = []) {
  const client = await pool.connect();
  try {
    await client.query("begin; set local session_replication_role = replica");
    await client.query(sql, values);
    await client.query("commit");
  } finally {
    client.release();
  }
}

beforeAll(async () => {
  control = await useControlPlane("fence_control");
  legacy = await createTestDatabase("fence_legacy");
  shards = [await createTestDatabase("fence_shard0"), await createTestDatabase("fence_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: 30, rows: 3_000, seed: 5 });
  const started = await startMovementOn(
    actor,
    "fence",
    legacy.url,
    shards.map((s) => s.url),
  );
  planId = started.planId;
  const plan = await db().plan.findUniqueOrThrow({ where: { id: planId }, include: { shards: true } });
  shard0Id = plan.shards.find((s) => s.ordinal === 0)?.databaseId ?? "";
  await installFences(actor, { planId, reason: "fence test" });
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

describe("the fence inside the database", () => {
  it("refuses a write straight to legacy for a tenant moved to a shard, and records it as a stray write", async () => {
    const outcome = await changeTenantRoutes(actor, {
      planId,
      changes: [{ tenantKey: "5", owner: shard0Id }],
      reason: "tenant 5 cut over (test)",
    });
    expect(outcome.fences.every((f) => !f.error && f.version === outcome.version)).toBe(true);

    const error = await refusal(legacy.pool, INSERT_EVENT, [5]);
    expect(error?.code).toBe("SS002");
    expect(error?.message).toMatch(/tenant 5 is owned by fence-shard-0, not by fence-legacy/);
    // Nothing was written, and the refusal is on the plan all the same.
    const { rows } = await legacy.pool.query("select count(*)::int as n from events where kind = 'test'");
    expect(rows[0]?.n).toBe(0);
    await collectStrayWrites(await loadPlanFences(planId));
    const strays = await db().strayWrite.findMany({ where: { planId } });
    expect(strays).toMatchObject([
      { databaseName: "fence-legacy", tenantKey: "5", reason: "not_owner", count: 1 },
    ]);
    expect((await routingSummary(planId)).strayWrites.total).toBe(1);
    // Read once: a second collection records nothing more.
    expect(await collectStrayWrites(await loadPlanFences(planId))).toBe(0);

    // Other tenants stay writable on legacy, and engine sessions pass for tenant 5 too.
    expect(await refusal(legacy.pool, INSERT_EVENT, [6])).toBeNull();
    await asEngine(legacy.pool, INSERT_EVENT, [5]);
  });

  it("refuses on a shard every tenant it does not own, and accepts the ones it does", async () => {
    await asEngine(shard(0).pool, INSERT_EVENT, [5]);
    await asEngine(shard(0).pool, INSERT_EVENT, [6]);
    expect(await refusal(shard(0).pool, "update events set kind = 'owned' where tenant_id = 5")).toBeNull();
    const error = await refusal(shard(0).pool, "update events set kind = 'stray' where tenant_id = 6");
    expect(error?.code).toBe("SS002");
    expect(error?.message).toMatch(/tenant 6 is owned by fence-legacy, not by fence-shard-0/);
    // The other shard owns nothing.
    await asEngine(shard(1).pool, INSERT_EVENT, [5]);
    expect((await refusal(shard(1).pool, "delete from events where tenant_id = 5"))?.code).toBe("SS002");
  });

  it("refuses writes to a frozen tenant, a whole transaction that touches one, and rows moved into a fenced tenant", async () => {
    await changeTenantRoutes(actor, {
      planId,
      changes: [{ tenantKey: "7", frozen: true }],
      reason: "freeze (test)",
    });
    const frozen = await refusal(legacy.pool, INSERT_EVENT, [7]);
    expect(frozen?.code).toBe("SS001");
    expect(frozen?.message).toMatch(/tenant 7 is frozen on fence-legacy/);

    const client = await legacy.pool.connect();
    try {
      await client.query("begin");
      await client.query(INSERT_EVENT, [8]);
      expect((await refusal(client, INSERT_EVENT, [7]))?.code).toBe("SS001");
      await client.query("rollback");
    } finally {
      client.release();
    }
    const { rows } = await legacy.pool.query(
      "select count(*)::int as n from events where tenant_id = 8 and kind = 'test'",
    );
    expect(rows[0]?.n).toBe(0);

    // An UPDATE that moves a row of a writable tenant into a fenced one.
    const moved = await refusal(
      legacy.pool,
      "update events set tenant_id = 5 where id = (select min(id) from events where tenant_id = 8)",
    );
    expect(moved?.code).toBe("SS002");
    const movedToFrozen = await refusal(
      legacy.pool,
      "update events set tenant_id = 7 where id = (select min(id) from events where tenant_id = 8)",
    );
    expect(movedToFrozen?.code).toBe("SS001");

    await collectStrayWrites(await loadPlanFences(planId));
    const reasons = await db().strayWrite.findMany({
      where: { planId, databaseName: "fence-legacy" },
      orderBy: { ticket: "asc" },
      select: { tenantKey: true, reason: true },
    });
    expect(reasons.slice(1)).toEqual([
      { tenantKey: "7", reason: "frozen" },
      { tenantKey: "7", reason: "frozen" },
      { tenantKey: "5", reason: "not_owner" },
      { tenantKey: "7", reason: "frozen" },
    ]);
  });

  it("makes a fence change wait for the transactions in flight on its tenant", async () => {
    const writer = await legacy.pool.connect();
    try {
      await writer.query("begin");
      await writer.query(INSERT_EVENT, [9]);
      const change = changeTenantRoutes(actor, {
        planId,
        changes: [{ tenantKey: "9", frozen: true }],
        reason: "freeze 9",
      });
      // The fence sync queues behind the open transaction's shared lock on tenant 9.
      await waitFor("the fence change to wait for the writer", async () => {
        const { rows } = await legacy.pool.query(
          "select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted",
        );
        return (rows[0]?.n ?? 0) > 0;
      });
      // A write arriving now waits behind the fence change and is refused once it lands: retryable,
      // and not a stray write (any router's write can race a fence change).
      await collectStrayWrites(await loadPlanFences(planId));
      const straysBefore = (await routingSummary(planId)).strayWrites.total;
      const racing = refusal(legacy.pool, INSERT_EVENT, [9]);
      await waitFor("the racing write to queue too", async () => {
        const { rows } = await legacy.pool.query(
          "select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted",
        );
        return (rows[0]?.n ?? 0) > 1;
      });
      await writer.query("commit");
      const raced = await racing;
      expect(raced?.code).toBe("SS001");
      expect(raced?.message).toMatch(/changed while this write waited/);
      await collectStrayWrites(await loadPlanFences(planId));
      expect((await routingSummary(planId)).strayWrites.total).toBe(straysBefore);
      const outcome = await change;
      expect(outcome.fences.find((f) => f.database === "fence-legacy")).toMatchObject({
        version: outcome.version,
      });
    } finally {
      writer.release();
    }
    // The write that was in flight committed; later ones are refused.
    const { rows } = await legacy.pool.query(
      "select count(*)::int as n from events where tenant_id = 9 and kind = 'test'",
    );
    expect(rows[0]?.n).toBe(1);
    expect((await refusal(legacy.pool, INSERT_EVENT, [9]))?.code).toBe("SS001");
  });

  it("refuses a REPEATABLE READ transaction whose snapshot predates a fence change", async () => {
    const client = await legacy.pool.connect();
    try {
      await client.query("begin isolation level repeatable read");
      await client.query("select count(*) from events");
      await changeTenantRoutes(actor, {
        planId,
        changes: [{ tenantKey: "10", frozen: true }],
        reason: "freeze 10",
      });
      expect((await refusal(client, INSERT_EVENT, [11]))?.code).toBe("SS001");
      await client.query("rollback");
    } finally {
      client.release();
    }
    expect(await refusal(legacy.pool, INSERT_EVENT, [11])).toBeNull();
  });
});

/** A map source the test moves by hand: the router learns of a change only when told. */
function manualMapSource(first: WireRoutingMap) {
  let push: ((map: WireRoutingMap) => void) | null = null;
  const queued: WireRoutingMap[] = [];
  const source: MapSource = {
    async load() {
      return first;
    },
    next(_version, signal) {
      const ready = queued.shift();
      if (ready) return Promise.resolve(ready);
      return new Promise((resolve) => {
        push = resolve;
        signal.addEventListener("abort", () => resolve(null), { once: true });
      });
    },
  };
  return {
    source,
    publish(map: WireRoutingMap) {
      if (push) {
        push(map);
        push = null;
      } else queued.push(map);
    },
  };
}

describe("a router whose map is behind the fence", () => {
  it("has the refused statement wait for the map and sends it once to the new owner", async () => {
    const stale = await readRoutingMapSnapshot(planId, null);
    if (!stale) throw new Error("no map");
    const manual = manualMapSource(stale);
    const router = await createRouter({
      databases: {
        "fence-legacy": legacy.pool,
        "fence-shard-0": shard(0).pool,
        "fence-shard-1": shard(1).pool,
      },
      map: manual.source,
    });
    try {
      await changeTenantRoutes(actor, {
        planId,
        changes: [{ tenantKey: "12", owner: shard0Id }],
        reason: "flip 12",
      });
      await collectStrayWrites(await loadPlanFences(planId)); // earlier tests' refusals
      const strayBefore = (await routingSummary(planId)).strayWrites.total;
      // The router still routes 12 to legacy; legacy's fence refuses; the router waits for its map.
      const write = router.forTenant(12).query("update events set kind = 'routed late' where tenant_id = 12");
      await waitFor("legacy to refuse the stale write", async () => {
        await collectStrayWrites(await loadPlanFences(planId));
        return (await routingSummary(planId)).strayWrites.total > strayBefore;
      });
      const current = await readRoutingMapSnapshot(planId, null);
      if (!current) throw new Error("no map");
      manual.publish(current);
      await write;
      expect(router.route(12).owner).toBe("fence-shard-0");
      await collectStrayWrites(await loadPlanFences(planId));
      // Refused once on legacy, not sent there again.
      expect((await routingSummary(planId)).strayWrites.total).toBe(strayBefore + 1);
    } finally {
      await router.close();
    }
  });

  it("writes tenant keys with quotes, backslashes and commas exactly (the change's values go as literals)", async () => {
    const keys = [`a"b`, "c\\d", "e'f", "{g,h}", "i j", ""];
    const state = await readFenceState(shard(1).pool);
    if (!state) throw new Error("no fence on shard 1");
    const { lsn } = await syncFence(shard(1).pool, {
      planId,
      databaseName: "fence-shard-1",
      routes: keys.map((k) => ({
        tenantKey: k,
        ownerKey: "legacy",
        ownerName: "x'y",
        frozen: true,
        version: 1,
      })),
      version: state.mapVersion,
    });
    expect(lsn > 0n).toBe(true);
    const { rows } = await shard(1).pool.query<{ tenant_key: string; owner_name: string; frozen: boolean }>(
      "select tenant_key, owner_name, frozen from shardshift.tenant_fence where tenant_key = any($1::text[]) order by tenant_key",
      [keys],
    );
    expect(rows.map((r) => r.tenant_key).sort()).toEqual([...keys].sort());
    expect(rows.every((r) => r.owner_name === "x'y" && r.frozen)).toBe(true);
    // A change at the version the fence holds leaves its version alone.
    expect((await readFenceState(shard(1).pool))?.mapVersion).toBe(state.mapVersion);
    await shard(1).pool.query("delete from shardshift.tenant_fence where tenant_key = any($1::text[])", [
      keys,
    ]);
  });

  it("waits out only a mover's own tenant's writes, not those of the other routes it carries", async () => {
    // A cutover's fence change carries every route changed since the fence's version, the other
    // cutovers' frozen tenants among them: it waited for their writes in flight too (the freeze's
    // tail with eight at once). With lockOnly it waits for its own; the rows are all written.
    const state = await readFenceState(legacy.pool);
    if (!state) throw new Error("no fence on legacy");
    const routes = ["21", "22"].map((tenantKey) => ({
      tenantKey,
      ownerKey: "legacy",
      ownerName: "fence-legacy",
      frozen: true,
      version: state.mapVersion,
    }));
    const writer = await legacy.pool.connect();
    try {
      await writer.query("begin");
      await writer.query(INSERT_EVENT, [21]);
      // Every route waited out: tenant 21's open writer holds the change past its lock timeout.
      await expect(
        syncFence(legacy.pool, {
          planId,
          databaseName: "fence-legacy",
          routes,
          version: state.mapVersion,
          lockTimeoutMs: 300,
        }),
      ).rejects.toThrow(/could not be changed within 300 ms/);
      // The mover of tenant 22: not held by tenant 21's writer.
      const { lsn } = await syncFence(legacy.pool, {
        planId,
        databaseName: "fence-legacy",
        routes,
        version: state.mapVersion,
        lockTimeoutMs: 300,
        lockOnly: ["22"],
      });
      expect(lsn > 0n).toBe(true);
      await writer.query("commit");
    } finally {
      writer.release();
    }
    // The write in flight committed; tenant 21's next one is refused (its row was written).
    expect((await refusal(legacy.pool, INSERT_EVENT, [21]))?.code).toBe("SS001");
    await legacy.pool.query("delete from shardshift.tenant_fence where tenant_key = any($1::text[])", [
      ["21", "22"],
    ]);
  });

  it("changes one route at the version the fence holds without waiting for its fence_state row", async () => {
    // Every change that raises a fence's version updates its one fence_state row; a one-route change
    // that does not (the cutover's freeze when the watch got there first, the new owner's opening)
    // must not queue behind them.
    const state = await readFenceState(shard(1).pool);
    if (!state) throw new Error("no fence on shard 1");
    const holder = await shard(1).pool.connect();
    try {
      await holder.query("begin; select 1 from shardshift.fence_state for update");
      await syncFence(shard(1).pool, {
        planId,
        databaseName: "fence-shard-1",
        routes: [{ tenantKey: "row-lock", ownerKey: "legacy", ownerName: "l", frozen: true, version: 1 }],
        version: state.mapVersion,
        lockTimeoutMs: 1_000,
      });
    } finally {
      await holder.query("rollback");
      holder.release();
    }
    await shard(1).pool.query("delete from shardshift.tenant_fence where tenant_key = 'row-lock'");
  });
});
