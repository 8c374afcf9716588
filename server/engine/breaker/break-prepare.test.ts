// Break pass of the rollback's prepare and freeze shortcuts (session 12's speed-ups), on one plan
// with tenants cut over to two shards, an in-process worker and real servers.
//
// 1. The sequences' first pass runs in the background from prepare on. When it fails (here: shard-0's
//    invoices sequence so close to its maximum that legacy cannot be set past it plus headroom)
//    while the slot checks are still running (shard-0's reverse_slot table held locked by this
//    test), its rejection must be heard: an unhandled rejection ends a worker process (and fails
//    this run). The trip must give up clearly, every tenant still on its shard, unfrozen, and every
//    database's fence equal to the map.
// 2. A trip of one shard's tenants while a legacy tenant cuts over to the other shard, with inserts
//    on the set's shard right up to the fence (direct, through the fence): once the trip has rolled
//    back and the cutover ended, every fence equals the map (the freeze's fence writes only the
//    shard's own tenants when it is one version behind), and legacy's sequences stand past every id
//    the shards handed out (no insert on legacy can reuse one).
// 3. The fence watch now collects stray writes before it syncs. A database that does not answer
//    (here shard-0, its fence_state held locked by this test, as a hung host would hold every read)
//    must not keep the other databases' fences behind the map: the round's sync reached them in
//    parallel before; collecting first (one database after the other) never got to the sync.
// 5. A trip of both shards' tenants with shard-0 down (its database accepts no connection) and its
//    writes not confirmed on legacy: its tenants are HELD, frozen on the map at the freeze's version
//    for as long as nobody re-arms. The freeze's fence on shard-1 (one version behind) wrote only
//    shard-1's own tenants, and the flip (which leaves held tenants out) never rewrote the others:
//    shard-1's fence must still equal the map (every other database's is synced from it).
// 4. The trip's service reads the plan beside the other reads: a missing plan, a database that is
//    not a shard of it, a cohort it does not have are still named as clearly.
import { randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { systemActor } from "../../services/actor";
import { previewBreaker, rearmBreaker, tripBreaker } from "../../services/breaker/breaker";
import { startDataMovement } from "../../services/movement/movement";
import { requestCutover } from "../../services/routing/cutover";
import { closeRoutingMapNotifier } from "../../services/routing/map-notifier";
import { useControlPlane } from "../../testing/control-plane";
import { waitForCutoverEnd } from "../../testing/cutover-fixture";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitForBackfill } from "../../testing/movement-fixture";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";
import { flushLsnMetric, reverseConfirmedMetric } from "../gates/shard-probe";
import { hashPlacement } from "../router/placement";

const TENANTS = 10;

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
let worker: Worker | null = null;
let planId = "";
let on0: string[] = [];
let on1: string[] = [];
let spare1: string[] = [];
const unhandled: string[] = [];
const onUnhandled = (reason: unknown) => {
  unhandled.push(String((reason as Error)?.message ?? reason));
};
const workerLog: string[] = [];
const actor = { ...systemActor("break-prepare", "operator@test"), role: "operator" as const };
const admin = { ...actor, email: "admin@test", role: "admin" as const };

beforeAll(async () => {
  process.on("unhandledRejection", onUnhandled);
  control = await useControlPlane("bpr_control");
  legacy = await createTestDatabase("bpr_legacy");
  shards = [await createTestDatabase("bpr_shard0"), await createTestDatabase("bpr_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: TENANTS, rows: TENANTS * 60, seed: 11 });
}, 120_000);

afterAll(async () => {
  process.off("unhandledRejection", onUnhandled);
  await worker?.stop();
  await closeRoutingMapNotifier();
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

function shardAt(i: number): TestDatabase {
  const shard = shards[i];
  if (!shard) throw new Error(`no shard ${i}`);
  return shard;
}

async function cutOver(tenant: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const { cutoverId } = await requestCutover(actor, {
      planId,
      tenantKey: tenant,
      reason: "setup",
      budgetMs: 10_000,
    });
    const end = await waitForCutoverEnd(cutoverId, 60_000);
    if (end.status === "done") return;
    if (attempt >= 3) throw new Error(`tenant ${tenant} did not cut over: ${end.error}`);
  }
}

async function tripEnd(tripId: string, timeoutMs = 120_000) {
  return waitFor(
    "the rollback to end",
    async () => {
      const r = await db().breakerTrip.findUniqueOrThrow({ where: { id: tripId } });
      return r.status === "rolled_back" || r.status === "failed" ? r : null;
    },
    timeoutMs,
  );
}

/** Every database's fence against the map: version, and each route's owner and frozen flag. */
async function fenceDrift(skip: readonly string[] = []): Promise<string[]> {
  const map = await db().routingMap.findUniqueOrThrow({ where: { planId } });
  const routes = await db().tenantRoute.findMany({ where: { planId } });
  const drift: string[] = [];
  for (const [name, pool] of [
    ["legacy", legacy.pool],
    ["shard-0", shards[0]?.pool],
    ["shard-1", shards[1]?.pool],
  ] as const) {
    if (!pool || skip.includes(name)) continue;
    const state = await pool.query<{ v: string }>(
      "select map_version::text as v from shardshift.fence_state",
    );
    if (BigInt(state.rows[0]?.v ?? "-1") !== map.version)
      drift.push(`${name}: fence at version ${state.rows[0]?.v}, map at ${map.version}`);
    const { rows } = await pool.query<{ tenant_key: string; owner_key: string; frozen: boolean }>(
      "select tenant_key, owner_key, frozen from shardshift.tenant_fence",
    );
    const fence = new Map(rows.map((r) => [r.tenant_key, r]));
    for (const r of routes) {
      const f = fence.get(r.tenantKey);
      const owner = r.ownerDatabaseId ?? "legacy";
      if (!f || f.owner_key !== owner || f.frozen !== r.frozen)
        drift.push(
          `${name}: tenant ${r.tenantKey} fence ${f ? `${f.owner_key}${f.frozen ? " frozen" : ""}` : "none"}, map ${owner}${r.frozen ? " frozen" : ""}`,
        );
    }
  }
  return drift;
}

/** Until no fence drifts from the map (the finish syncs them; the fence watch after it). */
async function fencesEqualMap(skip: readonly string[] = []): Promise<void> {
  let last: string[] = [];
  await waitFor(
    "every fence to equal the map",
    async () => {
      last = await fenceDrift(skip);
      return last.length === 0;
    },
    20_000,
  ).catch((error: Error) => {
    throw new Error(`${error.message}: ${last.join("; ")}`);
  });
}

describe("the rollback's prepare and freeze shortcuts", () => {
  it("a first sequences pass that fails while the slots are checked is heard: the trip gives up, nothing unhandled", {
    timeout: 240_000,
  }, async () => {
    const plan = await planAtTwoWayCdc(
      actor,
      "break prepare",
      legacy.url,
      shards.map((s) => s.url),
    );
    planId = plan.id;
    await db().plan.update({
      where: { id: plan.id },
      data: { settings: { ...(plan.settings as object), freezeBudgetMs: 10_000 } },
    });
    await startDataMovement(actor, { planId, reason: "go", resetShards: true });
    worker = await startWorker(control.url, { autoTrip: false, log: (m) => workerLog.push(m) });
    await waitForBackfill(planId, 120_000);
    await waitFor("forward replication to report its lag", () =>
      db().metricSample.findFirst({ where: { planId, name: "cdc.lag_ms" } }),
    );
    const placement = hashPlacement(2);
    const all = Array.from({ length: TENANTS }, (_, i) => String(i + 1));
    on0 = all.filter((t) => placement.shardFor(t) === 0).slice(0, 2);
    const rest1 = all.filter((t) => placement.shardFor(t) === 1);
    on1 = rest1.slice(0, 2);
    spare1 = rest1.slice(2);
    expect(on0.length).toBe(2);
    expect(on1.length).toBe(2);
    expect(spare1.length).toBeGreaterThan(0);
    for (const t of [...on0, ...on1]) await cutOver(t);

    // shard-0's invoices sequence near int8's maximum: legacy cannot be set 1,000,000 past it.
    const seq = "public.invoices_id_seq";
    const saved = await shardAt(0).pool.query<{ v: string }>(
      `select coalesce(pg_sequence_last_value('${seq}'), 1)::text as v`,
    );
    await shardAt(0).pool.query(`select setval('${seq}', 9223372036854000000)`);
    // The slot checks held (ensureReverseSlot reads shardshift.reverse_slot on each shard).
    const holder = new pg.Client({ connectionString: shardAt(0).url });
    await holder.connect();
    await holder.query("begin");
    await holder.query("lock table shardshift.reverse_slot in access exclusive mode");
    const { tripId } = await tripBreaker(actor, {
      planId,
      scope: { kind: "tenants", tenants: [...on0, ...on1] },
      reason: "first pass fails",
    });
    try {
      await waitFor("the slot check to wait on the lock", async () => {
        const { rows } = await shardAt(0).pool.query<{ n: number }>(
          `select count(*)::int as n from pg_locks l join pg_class c on c.oid = l.relation
           where c.relname = 'reverse_slot' and not l.granted`,
        );
        return (rows[0]?.n ?? 0) > 0;
      });
      // The first pass fails within moments (legacy refuses the out-of-range floor); heard or not,
      // it is over well within this window.
      await waitFor("an unhandled rejection", async () => unhandled.length > 0, 3_000).catch(() => null);
    } finally {
      await holder.query("rollback").catch(() => {});
      await holder.end().catch(() => {});
    }
    const ended = await tripEnd(tripId);
    await shardAt(0).pool.query(`select setval('${seq}', ${saved.rows[0]?.v ?? "1"})`);
    expect(unhandled).toEqual([]);
    expect(ended.status).toBe("failed");
    expect(ended.flipVersion).toBeNull();
    expect(ended.error ?? "").toMatch(/out of range|bigint/);
    const routes = await db().tenantRoute.findMany({
      where: { planId, tenantKey: { in: [...on0, ...on1] } },
    });
    for (const r of routes) {
      expect(r.ownerDatabaseId).not.toBeNull();
      expect(r.frozen).toBe(false);
    }
    await fencesEqualMap();
  });

  it("a trip of one shard while another shard's tenant cuts over, inserts up to the fence: fences equal the map, legacy's sequences past every shard id", {
    timeout: 240_000,
  }, async () => {
    expect(planId).not.toBe("");
    unhandled.length = 0; // the first test's own, if any, are its failure
    await rearmBreaker(admin, { planId, reason: "sequence restored" });
    const planShards = await db().plan.findUniqueOrThrow({
      where: { id: planId },
      select: { shards: { orderBy: { ordinal: "asc" }, select: { databaseId: true } } },
    });
    const shard0Id = planShards.shards[0]?.databaseId ?? "";
    // Inserts on shard-0 for the set's tenants, straight through its fence, until it refuses them.
    let inserting = true;
    let inserted = 0;
    const refusals: string[] = [];
    const inserter = (async () => {
      const client = new pg.Client({ connectionString: shardAt(0).url });
      await client.connect();
      try {
        while (inserting) {
          for (const t of on0) {
            await client
              .query(
                `insert into invoices (tenant_id, currency_code, amount_cents, status, issued_at, due_at)
                 values ($1, 'USD', 1, 'open', now(), now())`,
                [t],
              )
              .then(
                () => inserted++,
                (e: Error) => refusals.push(e.message),
              );
          }
        }
      } finally {
        await client.end();
      }
    })();
    await waitFor("inserts on shard-0", async () => inserted > 20);
    // Requested just before the trip (a request is refused while a trip is in flight): not of the
    // scope, so it runs beside the rollback.
    const cutover = await requestCutover(actor, {
      planId,
      tenantKey: spare1[0] ?? "",
      reason: "beside the trip",
      budgetMs: 10_000,
    });
    const { tripId } = await tripBreaker(actor, {
      planId,
      scope: { kind: "shard", databaseId: shard0Id },
      reason: "one shard",
    });
    const ended = await tripEnd(tripId);
    inserting = false;
    await inserter;
    const cut = await waitForCutoverEnd(cutover.cutoverId, 60_000);
    expect(ended.status, ended.error ?? "").toBe("rolled_back");
    expect(["done", "aborted", "failed"]).toContain(cut.status);
    expect(refusals.length).toBeGreaterThan(0); // the fence did stop them
    const routes = await db().tenantRoute.findMany({ where: { planId, tenantKey: { in: on0 } } });
    for (const r of routes) {
      expect(r.ownerDatabaseId).toBeNull();
      expect(r.frozen).toBe(false);
    }
    await fencesEqualMap();
    // Legacy's sequences past every id the shards handed out; an insert on legacy for a rolled-back
    // tenant takes an id no shard row has.
    for (const table of ["invoices", "events"]) {
      const seq = `public.${table}_id_seq`;
      const legacySeq = await legacy.pool.query<{ v: string }>(
        `select coalesce(pg_sequence_last_value('${seq}'), 0)::text as v`,
      );
      for (const s of shards) {
        const max = await s.pool.query<{ v: string }>(`select coalesce(max(id), 0)::text as v from ${table}`);
        expect(BigInt(legacySeq.rows[0]?.v ?? "0"), `${table} on legacy vs a shard`).toBeGreaterThan(
          BigInt(max.rows[0]?.v ?? "0"),
        );
      }
    }
    const fresh = await legacy.pool.query<{ id: string }>(
      `insert into invoices (tenant_id, currency_code, amount_cents, status, issued_at, due_at)
       values ($1, 'USD', 2, 'open', now(), now()) returning id::text`,
      [on0[0]],
    );
    for (const s of shards) {
      const { rows } = await s.pool.query<{ n: number }>(
        "select count(*)::int as n from invoices where id = $1",
        [fresh.rows[0]?.id],
      );
      expect(rows[0]?.n).toBe(0);
    }
    expect(unhandled).toEqual([]);
  });

  it("a database that does not answer leaves the others' fences to the watch's sync", {
    timeout: 120_000,
  }, async () => {
    expect(planId).not.toBe("");
    unhandled.length = 0;
    const holder = new pg.Client({ connectionString: shardAt(0).url });
    await holder.connect();
    holder.on("error", () => {});
    try {
      await holder.query("begin");
      await holder.query("lock table shardshift.fence_state in access exclusive mode");
      // A map change only the fence watch brings to the fences (a route rewritten as it is).
      const [bumped] = await db().$queryRawUnsafe<{ v: bigint }[]>(
        `with m as (update routing_map set version = version + 1 where plan_id = $1::uuid returning version)
         update tenant_route set version = (select version from m) where plan_id = $1::uuid and tenant_key = $2
         returning version as v`,
        planId,
        on1[0],
      );
      const version = bumped?.v ?? 0n;
      expect(version).toBeGreaterThan(0n);
      const versionOf = async (pool: pg.Pool) =>
        BigInt(
          (await pool.query<{ v: string }>("select map_version::text as v from shardshift.fence_state"))
            .rows[0]?.v ?? "0",
        );
      await waitFor(
        "legacy's and shard-1's fences to reach the map while shard-0 does not answer",
        async () =>
          (await versionOf(legacy.pool)) >= version && (await versionOf(shardAt(1).pool)) >= version,
        15_000,
      );
    } finally {
      await holder.query("rollback").catch(() => {});
      await holder.end().catch(() => {});
    }
    await fencesEqualMap();
    expect(unhandled).toEqual([]);
  });

  it("the trip's service still names a missing plan, a foreign shard and a missing cohort", async () => {
    expect(planId).not.toBe("");
    await expect(previewBreaker({ planId: randomUUID(), scope: { kind: "all" } })).rejects.toThrow(
      /This plan does not exist/,
    );
    await expect(
      tripBreaker(actor, {
        planId: randomUUID(),
        scope: { kind: "shard", databaseId: randomUUID() },
        reason: "no plan",
      }),
    ).rejects.toThrow(/This plan does not exist/);
    await expect(
      previewBreaker({ planId: randomUUID(), scope: { kind: "cohort", ordinal: 3, andLater: true } }),
    ).rejects.toThrow(/This plan does not exist/);
    const foreign = await previewBreaker({ planId, scope: { kind: "shard", databaseId: randomUUID() } });
    expect(foreign.blockers.join(" ")).toContain("is not a shard of this plan");
    const cohort = await previewBreaker({ planId, scope: { kind: "cohort", ordinal: 99, andLater: false } });
    expect(cohort.blockers.join(" ")).toContain("no cohort 99");
    await expect(
      tripBreaker(actor, { planId, scope: { kind: "cohort", ordinal: 99, andLater: false }, reason: "none" }),
    ).rejects.toThrow(/no cohort 99/);
  });

  it("a held trip leaves every answering fence equal to the map", { timeout: 120_000 }, async () => {
    expect(planId).not.toBe("");
    unhandled.length = 0;
    await rearmBreaker(admin, { planId, reason: "again" });
    for (const t of on0) await cutOver(t); // rolled back by the second test
    const { ordinal, databaseId } = await db().planShard.findFirstOrThrow({
      where: { planId, ordinal: 0 },
      select: { ordinal: true, databaseId: true },
    });
    const owned = await db().tenantRoute.findMany({ where: { planId, ownerDatabaseId: { not: null } } });
    expect(owned.some((r) => r.ownerDatabaseId === databaseId)).toBe(true);
    expect(owned.some((r) => r.ownerDatabaseId !== databaseId)).toBe(true);
    await fencesEqualMap();
    // Its last probe: flushed far past what legacy is known to hold (the newest samples).
    const at = new Date(Date.now() + 3_600_000);
    await db().metricSample.createMany({
      data: [
        { planId, name: flushLsnMetric(ordinal), value: 4_000_000_000, at },
        { planId, name: reverseConfirmedMetric(ordinal), value: 1, at },
      ],
    });
    const name = shardAt(0).name;
    const allow = (on: boolean) =>
      `alter database ${name} allow_connections ${on};` +
      (on ? "" : ` select pg_terminate_backend(pid) from pg_stat_activity where datname = '${name}';`);
    await legacy.pool.query(allow(false));
    try {
      const { tripId } = await tripBreaker(actor, { planId, scope: { kind: "all" }, reason: "shard-0 down" });
      const ended = await tripEnd(tripId);
      expect(ended.status, ended.error ?? "").toBe("failed");
      expect(ended.error ?? "").toContain("held");
      const held = await db().tenantRoute.findMany({ where: { planId, ownerDatabaseId: databaseId } });
      expect(held.length).toBeGreaterThan(0);
      for (const r of held) expect(r.frozen).toBe(true);
      await fencesEqualMap(["shard-0"]);
    } finally {
      await legacy.pool.query(allow(true));
    }
    expect(unhandled).toEqual([]);
  });
});
