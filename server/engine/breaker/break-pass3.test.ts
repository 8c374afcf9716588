// Break pass 3 of the rollback breaker, on one plan with tenants cut over to two shards, an
// in-process worker and real servers (the earlier pass's fixes were lost: each is reproduced
// here). Numbered as the defects were found (the brief's 1–5, then 6 and 7 by this pass); the
// tests run in file order.
//
// 1. A multi-tenant writer on shard-0 holds one tenant of the set (its shared fence lock) and then
//    writes another while the freeze's fence waits for the first: a deadlock (40P01), the fence its
//    victim. The trip must try the fence again within its budget and roll back, the writer's rows on
//    legacy.
// 3. shard-0's reverse slot is dropped and made again (ensureReverseSlot does so silently) with a
//    write in between: legacy's origin of the old slot stops below the new slot's consistent point,
//    the new slot streams only after it, so that write never reaches legacy. The trip must not flip
//    shard-0's tenants onto a legacy that lacks it.
//    A single tenant's cutover back to legacy from that shard drains the same way: refused too.
// 4. The same on shard-1, which is then down: the proof of its last probe (the new slot's confirmed
//    position at or past its flushed one) says nothing of the gap. Its tenants must be held.
// 2. Re-arming that held trip emits a trip of the held tenants; shard-1 answers again but the
//    trip gives up before its freeze (the gap): the held tenants must not stay frozen forever.
// 5. A parity pass whose legacy session is ended by the server (pg_terminate_backend) while it is
//    idle between two queries: no unheard 'error' (it ends a worker process); the pass fails, the
//    next one runs.
// 6. The same for a parity repair: its legacy side idles in its transaction (the row's share lock)
//    while the shard's side waits for the row; the server ends the legacy session then.
// 7. A run whose lock session is cut off without its client hearing it (a proxy drops it) while
//    its fence waits: the worker takes the trip over; the stale run's give-up must not undo the
//    worker's freeze nor end its attempt as failed.
// 8. The same cut-off run whose fence goes on after the server ended its lock session: it recorded
//    the trip's "fenced" and "drained" steps while the worker drove the trip, then hung in its flip
//    on the dead session. Its trip writes are now conditional on its session holding the lock
//    (trip-store.ts): the first changes nothing and the run stops.
import net from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { systemActor } from "../../services/actor";
import { auditBreakerEventsAs, auditTripAs, rearmBreaker, tripBreaker } from "../../services/breaker/breaker";
import { startDataMovement } from "../../services/movement/movement";
import { requestCutover } from "../../services/routing/cutover";
import { closeRoutingMapNotifier } from "../../services/routing/map-notifier";
import { auditRoutingChangesAs, draftRoutingAuditAs } from "../../services/routing/routing";
import { useControlPlane } from "../../testing/control-plane";
import { waitForCutoverEnd } from "../../testing/cutover-fixture";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitForBackfill } from "../../testing/movement-fixture";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";
import { introspectSource } from "../analysis/introspect";
import { reverseSlotName } from "../cdc/reverse-slot";
import { parseLsn, readSlotStatus } from "../cdc/slot";
import { legacyReverseOrigins } from "../cutover/cdc-links";
import { flushLsnMetric, reverseConfirmedMetric, reverseSlotLsnMetric } from "../gates/shard-probe";
import { fullPass } from "../parity/chunk-hash";
import { repairRow } from "../parity/repair";
import { hashPlacement } from "../router/placement";
import { FENCE_LOCK_CLASS } from "../routing/fence-sql";
import { FENCE_SYNC_LOCK } from "../routing/fence-watch";
import { planTable } from "../shared/table-plan";
import { emitTrip } from "./emit-trip";
import { BREAKER_LOCK_CLASS, startRollbackRun } from "./run-rollback";

const TENANTS = 16;
const REVERSE_SLOT_LOCK_CLASS = 7_363_601;

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
let worker: Worker | null = null;
let planId = "";
let deadlockSet: string[] = []; // two of shard-0's
let gapSet0: string[] = []; // two more of shard-0's
let gapSet1: string[] = []; // two of shard-1's
const unhandled: string[] = [];
const onUnhandled = (reason: unknown) => {
  unhandled.push(String((reason as Error)?.message ?? reason));
};
const workerLog: string[] = [];
const actor = { ...systemActor("break-pass3", "operator@test"), role: "operator" as const };
const admin = { ...actor, email: "admin@test", role: "admin" as const };

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

async function shardIds(): Promise<string[]> {
  const rows = await db().planShard.findMany({ where: { planId }, orderBy: { ordinal: "asc" } });
  return rows.map((r) => r.databaseId);
}

/** The pool of the database the map names as the tenant's owner now. */
async function ownerPool(tenant: string): Promise<pg.Pool> {
  const route = await db().tenantRoute.findUniqueOrThrow({
    where: { planId_tenantKey: { planId, tenantKey: tenant } },
  });
  if (route.ownerDatabaseId === null) return legacy.pool;
  const index = (await shardIds()).indexOf(route.ownerDatabaseId);
  return shardAt(index).pool;
}

async function insertInvoice(
  client: pg.ClientBase | pg.Pool,
  tenant: string,
  cents: number,
): Promise<string> {
  const { rows } = await client.query<{ id: string }>(
    `insert into invoices (tenant_id, currency_code, amount_cents, status, issued_at, due_at)
     values ($1, 'USD', $2, 'open', now(), now()) returning id::text`,
    [tenant, cents],
  );
  return rows[0]?.id ?? "";
}

async function hasInvoice(pool: pg.Pool, id: string): Promise<boolean> {
  const { rows } = await pool.query<{ n: number }>("select count(*)::int as n from invoices where id = $1", [
    id,
  ]);
  return (rows[0]?.n ?? 0) === 1;
}

/** Every answering database's fence against the map. */
async function fenceDrift(skip: readonly string[] = []): Promise<string[]> {
  const map = await db().routingMap.findUniqueOrThrow({ where: { planId } });
  const routes = await db().tenantRoute.findMany({ where: { planId } });
  const drift: string[] = [];
  for (const [name, pool] of [
    ["legacy", legacy.pool],
    ["shard-0", shardAt(0).pool],
    ["shard-1", shardAt(1).pool],
  ] as const) {
    if (skip.includes(name)) continue;
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
          `${name}: tenant ${r.tenantKey} fence ${f?.owner_key}${f?.frozen ? " frozen" : ""}, map ${owner}`,
        );
    }
  }
  return drift;
}

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

/**
 * Drops shard `i`'s reverse slot (its stream's walsender ended first) and lets the worker's
 * stream make it again — with an invoice of `tenant` written on the shard in between (the slot's
 * creation is held back by its lock meanwhile). Returns the invoice's id and the new slot's
 * consistent point.
 */
async function recreateSlotAroundWrite(i: number, tenant: string): Promise<{ id: string; slotLsn: bigint }> {
  const shard = shardAt(i);
  const slot = reverseSlotName(planId, i);
  const before = await shard.pool.query<{ lsn: string }>(
    "select slot_lsn::text as lsn from shardshift.reverse_slot where slot_name = $1",
    [slot],
  );
  const oldLsn = parseLsn(before.rows[0]?.lsn ?? "0/0");
  const holder = new pg.Client({ connectionString: shard.url });
  holder.on("error", () => {});
  await holder.connect();
  let id = "";
  try {
    await holder.query("select pg_advisory_lock($1, hashtext($2))", [REVERSE_SLOT_LOCK_CLASS, slot]);
    await waitFor(
      "the reverse slot to be dropped",
      async () => {
        await shard.pool.query(
          "select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = $1 and active_pid is not null",
          [slot],
        );
        return shard.pool.query("select pg_drop_replication_slot($1)", [slot]).then(
          () => true,
          () => false,
        );
      },
      20_000,
    );
    id = await insertInvoice(shard.pool, tenant, 424_242);
  } finally {
    await holder
      .query("select pg_advisory_unlock($1, hashtext($2))", [REVERSE_SLOT_LOCK_CLASS, slot])
      .catch(() => {});
    await holder.end().catch(() => {});
  }
  const slotLsn = await waitFor(
    "the reverse slot made again and streamed from",
    async () => {
      const { rows } = await shard.pool.query<{ lsn: string; active: boolean }>(
        `select r.slot_lsn::text as lsn, s.active from shardshift.reverse_slot r
         join pg_replication_slots s on s.slot_name = r.slot_name where r.slot_name = $1`,
        [slot],
      );
      const row = rows[0];
      if (!row?.active) return null;
      const lsn = parseLsn(row.lsn);
      return lsn > oldLsn ? lsn : null;
    },
    60_000,
  );
  return { id, slotLsn };
}

beforeAll(async () => {
  process.on("unhandledRejection", onUnhandled);
  control = await useControlPlane("bp3_control");
  legacy = await createTestDatabase("bp3_legacy");
  shards = [await createTestDatabase("bp3_shard0"), await createTestDatabase("bp3_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: TENANTS, rows: TENANTS * 40, seed: 13 });
  const plan = await planAtTwoWayCdc(
    actor,
    "break pass 3",
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
  const of0 = all.filter((t) => placement.shardFor(t) === 0);
  const of1 = all.filter((t) => placement.shardFor(t) === 1);
  deadlockSet = of0.slice(0, 2);
  gapSet0 = of0.slice(2, 4);
  gapSet1 = of1.slice(0, 2);
  expect(gapSet0.length).toBe(2);
  expect(gapSet1.length).toBe(2);
  for (const t of [...deadlockSet, ...gapSet0, ...gapSet1]) await cutOver(t);
}, 300_000);

afterAll(async () => {
  process.off("unhandledRejection", onUnhandled);
  await worker?.stop();
  await closeRoutingMapNotifier();
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

describe("break pass 3 of the rollback breaker", () => {
  it("a multi-tenant writer deadlocking the freeze's fence: the fence is tried again, the trip rolls back", {
    timeout: 120_000,
  }, async () => {
    unhandled.length = 0;
    // The fence takes its tenants' exclusive locks in hashtext order: the writer holds the later
    // one first, so the fence holds the earlier and waits; the writer then writes the earlier.
    const { rows } = await shardAt(0).pool.query<{ k: string }>(
      "select k from unnest($1::text[]) as k order by hashtext(k)",
      [deadlockSet],
    );
    const [first, second] = rows.map((r) => r.k);
    if (!first || !second) throw new Error("two tenants expected");
    const writer = new pg.Client({ connectionString: shardAt(0).url });
    writer.on("error", () => {});
    await writer.connect();
    const ids: string[] = [];
    let tripId = "";
    try {
      await writer.query("begin");
      ids.push(await insertInvoice(writer, second, 111));
      ({ tripId } = await tripBreaker(actor, {
        planId,
        scope: { kind: "tenants", tenants: deadlockSet },
        reason: "multi-tenant writer",
      }));
      await waitFor("the fence to wait for the writer", async () => {
        const { rows: waiting } = await shardAt(0).pool.query<{ n: number }>(
          "select count(*)::int as n from pg_locks where locktype = 'advisory' and classid = $1 and not granted",
          [FENCE_LOCK_CLASS],
        );
        return (waiting[0]?.n ?? 0) > 0;
      });
      ids.push(await insertInvoice(writer, first, 222)); // the cycle: one of the two is aborted
      await writer.query("commit");
    } catch (error) {
      // The writer was the victim: nothing of it was acknowledged.
      ids.length = 0;
      await writer.query("rollback").catch(() => {});
      workerLog.push(`writer: ${(error as Error).message}`);
    } finally {
      await writer.end().catch(() => {});
    }
    const ended = await tripEnd(tripId);
    expect(ended.status, ended.error ?? "").toBe("rolled_back");
    for (const id of ids) expect(await hasInvoice(legacy.pool, id), `invoice ${id} on legacy`).toBe(true);
    await fencesEqualMap();
    expect(unhandled).toEqual([]);
  });

  it("a reverse slot made again after a write it never streamed: the trip does not flip that shard's tenants", {
    timeout: 180_000,
  }, async () => {
    unhandled.length = 0;
    const tenant = gapSet0[0] ?? "";
    const { id } = await recreateSlotAroundWrite(0, tenant);
    const { tripId } = await tripBreaker(actor, {
      planId,
      scope: { kind: "tenants", tenants: gapSet0 },
      reason: "slot made again",
    });
    const ended = await tripEnd(tripId);
    // The acknowledged write is where the map says the tenant is.
    expect(await hasInvoice(await ownerPool(tenant), id), "the write between the slots on its owner").toBe(
      true,
    );
    expect(ended.status).toBe("failed");
    expect(ended.error ?? "").toMatch(/made again/);
    const routes = await db().tenantRoute.findMany({ where: { planId, tenantKey: { in: gapSet0 } } });
    for (const r of routes) {
      expect(r.ownerDatabaseId).toBe((await shardIds())[0]);
      expect(r.frozen).toBe(false);
    }
    await fencesEqualMap();
    expect(unhandled).toEqual([]);
  });

  it("after that, a tenant's cutover back to legacy from the same shard is refused before its freeze", {
    timeout: 120_000,
  }, async () => {
    unhandled.length = 0;
    const tenant = gapSet0[0] ?? "";
    // The previous test's write between shard-0's slots, not on legacy.
    const { rows } = await shardAt(0).pool.query<{ id: string }>(
      "select id::text as id from invoices where tenant_id = $1 and amount_cents = 424242",
      [tenant],
    );
    const id = rows[0]?.id ?? "";
    expect(id).not.toBe("");
    const { cutoverId } = await requestCutover(actor, {
      planId,
      tenantKey: tenant,
      reason: "back",
      budgetMs: 10_000,
    });
    const end = await waitForCutoverEnd(cutoverId, 60_000);
    expect(await hasInvoice(await ownerPool(tenant), id), "the write between the slots on its owner").toBe(
      true,
    );
    expect(end.status).not.toBe("done");
    expect(end.error ?? "").toMatch(/made again/);
    expect(unhandled).toEqual([]);
  });

  it("a down shard whose reverse slot was made again: its tenants are held, not flipped on the new slot's proof", {
    timeout: 180_000,
  }, async () => {
    unhandled.length = 0;
    const tenant = gapSet1[0] ?? "";
    const { id, slotLsn } = await recreateSlotAroundWrite(1, tenant);
    const slot = reverseSlotName(planId, 1);
    // The new stream confirmed what it read: a probe then saw confirmed at or past flushed.
    const confirmed = await waitFor("the new slot to confirm a position", async () => {
      const status = await readSlotStatus(shardAt(1).pool, slot);
      return status?.confirmedFlushLsn && status.confirmedFlushLsn >= slotLsn
        ? status.confirmedFlushLsn
        : null;
    });
    const at = new Date(Date.now() + 3_600_000);
    await db().metricSample.createMany({
      data: [
        { planId, name: flushLsnMetric(1), value: Number(confirmed), at },
        { planId, name: reverseConfirmedMetric(1), value: Number(confirmed), at },
        { planId, name: reverseSlotLsnMetric(1), value: Number(slotLsn), at },
      ],
    });
    const name = shardAt(1).name;
    await legacy.pool.query(
      `alter database ${name} allow_connections false; select pg_terminate_backend(pid) from pg_stat_activity where datname = '${name}'`,
    );
    try {
      const { tripId } = await tripBreaker(actor, {
        planId,
        scope: { kind: "tenants", tenants: gapSet1 },
        reason: "shard-1 down",
      });
      const ended = await tripEnd(tripId);
      const routes = await db().tenantRoute.findMany({ where: { planId, tenantKey: { in: gapSet1 } } });
      for (const r of routes) {
        expect(r.ownerDatabaseId, `${r.tenantKey} not flipped onto a legacy without the write`).toBe(
          (await shardIds())[1],
        );
        expect(r.frozen).toBe(true);
      }
      expect(ended.status).toBe("failed");
      expect(ended.error ?? "").toMatch(/held/);
      expect(ended.error ?? "").toMatch(/made again/);
    } finally {
      await legacy.pool.query(`alter database ${name} allow_connections true`);
    }
    expect(await hasInvoice(await ownerPool(tenant), id)).toBe(true);
    expect(unhandled).toEqual([]);
  });

  it("re-arming a held trip whose finishing trip gives up before its freeze: the held tenants are not left frozen", {
    timeout: 180_000,
  }, async () => {
    unhandled.length = 0;
    const held = await db().tenantRoute.findMany({ where: { planId, tenantKey: { in: gapSet1 } } });
    expect(held.every((r) => r.frozen)).toBe(true); // the previous test's held trip
    await waitFor("shard-1 to answer", () =>
      shardAt(1)
        .pool.query("select 1")
        .then(
          () => true,
          () => false,
        ),
    );
    const { heldTripId } = await rearmBreaker(admin, { planId, reason: "shard-1 back" });
    expect(heldTripId).not.toBeNull();
    const ended = await tripEnd(heldTripId ?? "");
    expect(ended.status).toBe("failed"); // the gap of the previous test: nothing flips
    const routes = await db().tenantRoute.findMany({ where: { planId, tenantKey: { in: gapSet1 } } });
    for (const r of routes) {
      expect(r.ownerDatabaseId).toBe((await shardIds())[1]);
      expect(r.frozen, `${r.tenantKey} still frozen after the finishing trip gave up`).toBe(false);
    }
    await fencesEqualMap();
    expect(unhandled).toEqual([]);
  });

  it("a parity pass whose legacy session the server ends: no unheard error, the pass fails, the next runs", {
    timeout: 60_000,
  }, async () => {
    const uncaught: string[] = [];
    const onUncaught = (error: Error) => uncaught.push(error.message);
    process.on("uncaughtException", onUncaught);
    const pool = new pg.Pool({ connectionString: legacy.url, application_name: "bp3-parity", max: 2 });
    let client: pg.Client | null = null;
    pool.on("connect", (c) => {
      client = c as unknown as pg.Client;
    });
    try {
      const schemaClient = new pg.Client({ connectionString: legacy.url });
      await schemaClient.connect();
      const schema = await introspectSource(schemaClient, "tenant_id").finally(() => schemaClient.end());
      let killed = false;
      const pass = fullPass(
        pool,
        shards.map((s) => s.pool),
        hashPlacement(2),
        schema,
        undefined,
        {
          maxChunkRows: null,
          async take(side) {
            if (side !== 0 || killed) return;
            killed = true;
            await legacy.pool.query(
              "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'bp3-parity'",
            );
            await waitFor(
              "the parity session's socket to close",
              async () =>
                (client as unknown as { connection?: { stream?: { destroyed?: boolean } } } | null)
                  ?.connection?.stream?.destroyed === true,
              10_000,
            );
          },
        },
        1,
      );
      await expect(pass).rejects.toThrow();
      expect(uncaught).toEqual([]);
      const again = await fullPass(
        pool,
        shards.map((s) => s.pool),
        hashPlacement(2),
        schema,
      );
      expect(again.legacyRows).toBeGreaterThan(0);
    } finally {
      process.off("uncaughtException", onUncaught);
      await pool.end().catch(() => {});
    }
  });

  it("a parity repair whose legacy session the server ends while the shard's side waits: no unheard error", {
    timeout: 60_000,
  }, async () => {
    const uncaught: string[] = [];
    const onUncaught = (error: Error) => uncaught.push(error.message);
    process.on("uncaughtException", onUncaught);
    const pool = new pg.Pool({ connectionString: legacy.url, application_name: "bp3-repair", max: 2 });
    let client: pg.Client | null = null;
    pool.on("connect", (c) => {
      client = c as unknown as pg.Client;
    });
    const placement = hashPlacement(2);
    // A tenant legacy owns (never cut over), and one of its invoices, on its shard by forward CDC.
    const tenant = Array.from({ length: TENANTS }, (_, i) => String(i + 1)).find(
      (t) => ![...deadlockSet, ...gapSet0, ...gapSet1].includes(t),
    ) as string;
    const ordinal = placement.shardFor(tenant);
    const { rows } = await legacy.pool.query<{ id: string }>(
      "select id::text as id from invoices where tenant_id = $1 order by id limit 1",
      [tenant],
    );
    const id = rows[0]?.id ?? "";
    await waitFor("the invoice on its shard", async () => hasInvoice(shardAt(ordinal).pool, id));
    const schemaClient = new pg.Client({ connectionString: legacy.url });
    await schemaClient.connect();
    const schema = await introspectSource(schemaClient, "tenant_id").finally(() => schemaClient.end());
    const table = schema.tables.find((t) => t.name === "invoices");
    if (!table) throw new Error("no invoices table");
    const blocker = new pg.Client({ connectionString: shardAt(ordinal).url });
    blocker.on("error", () => {});
    await blocker.connect();
    try {
      await blocker.query("begin");
      await blocker.query("select 1 from invoices where id = $1 for update", [id]);
      const repair = repairRow(
        pool,
        shards.map((s) => s.pool),
        placement,
        planTable(table, "tenant_id"),
        ordinal,
        [tenant, id],
      );
      repair.catch(() => {});
      await waitFor("the repair's shard side to wait for the row", async () => {
        const { rows: waiting } = await shardAt(ordinal).pool.query<{ n: number }>(
          "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
        );
        return (waiting[0]?.n ?? 0) > 0;
      });
      await legacy.pool.query(
        "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'bp3-repair'",
      );
      await waitFor(
        "the repair's legacy socket to close",
        async () =>
          (client as unknown as { connection?: { stream?: { destroyed?: boolean } } } | null)?.connection
            ?.stream?.destroyed === true,
        10_000,
      );
      await blocker.query("rollback");
      await expect(repair).rejects.toThrow();
      expect(uncaught).toEqual([]);
    } finally {
      process.off("uncaughtException", onUncaught);
      await blocker.end().catch(() => {});
      await pool.end().catch(() => {});
    }
  });

  it("a run cut off from its lock without hearing it does not give up the trip another worker took over", {
    timeout: 180_000,
  }, async () => {
    unhandled.length = 0;
    // shard-0's stale origin (test 3) dropped on legacy, as its message says once legacy is whole.
    const slot = reverseSlotName(planId, 0);
    for (const o of (await legacyReverseOrigins(legacy.pool, slot)).slice(0, -1))
      await legacy.pool.query("select pg_replication_origin_drop($1)", [o.name]);
    for (const t of deadlockSet) {
      const route = await db().tenantRoute.findUnique({
        where: { planId_tenantKey: { planId, tenantKey: t } },
      });
      if (!route?.ownerDatabaseId) await cutOver(t); // rolled back by test 1
    }
    // The stale run's lock session goes through a proxy that can cut it off silently: the server
    // ends the session (the lock is free), the run's client hears nothing.
    const target = new URL(control.url);
    const pairs: { down: net.Socket; up: net.Socket }[] = [];
    const proxy = net.createServer((down) => {
      const up = net.connect(Number(target.port || 5432), target.hostname);
      down.on("error", () => {});
      up.on("error", () => {});
      down.pipe(up);
      up.pipe(down);
      pairs.push({ down, up });
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const via = new URL(control.url);
    via.hostname = "127.0.0.1";
    via.port = String((proxy.address() as net.AddressInfo).port);
    const lock = new pg.Client({ connectionString: via.toString(), application_name: "bp3-stale" });
    lock.on("error", () => {});
    await lock.connect();
    // A writer of the set on shard-0: both runs' fences wait for it.
    const writer = new pg.Client({ connectionString: shardAt(0).url });
    writer.on("error", () => {});
    await writer.connect();
    await writer.query("begin");
    await insertInvoice(writer, deadlockSet[0] ?? "", 333);
    // A fence-watch round holding the plan's fences (the sync lock) through the stale run's freeze:
    // the run still asks for them on its lock session when that session is cut off, and the ask
    // never came back — the run hung there for ever (the full suite, on a loaded machine, where a
    // watch round ran long; here made certain).
    const watchRound = await control.pool.connect();
    await watchRound.query("select pg_advisory_lock($1, hashtext($2))", [FENCE_SYNC_LOCK, planId]);
    const staleLog: string[] = [];
    let run: ReturnType<typeof startRollbackRun> | null = null;
    try {
      // The trip, its lock taken by the stale run's session before the worker can see it.
      const tripId = await db().$transaction(async (tx) => {
        const { tripId: id } = await emitTrip(
          tx,
          {
            planId,
            scope: { kind: "tenants", tenants: deadlockSet },
            trigger: "manual",
            actor,
            reason: "stale run",
            budgetMs: 6_000,
            tenantCount: deadlockSet.length,
          },
          auditTripAs(actor),
        );
        await lock.query("select pg_advisory_lock($1, hashtext($2))", [BREAKER_LOCK_CLASS, id]);
        return id;
      });
      const engine = systemActor("bp3-stale", "engine@shardshift");
      run = startRollbackRun(tripId, {
        worker: "stale",
        controlPlaneUrl: control.url,
        audit: auditRoutingChangesAs(engine),
        breakerAudit: auditBreakerEventsAs(engine),
        auditDraft: draftRoutingAuditAs(engine),
        connection: lock,
        log: (m) => {
          staleLog.push(m);
          if (/\] froze \d+ tenants/.test(m)) {
            for (const { down, up } of pairs) {
              down.unpipe(up);
              up.unpipe(down);
              up.destroy();
            }
          }
        },
      });
      // Its fence gives up at its budget; then the writer ends and the worker's attempt can fence.
      await waitFor(
        "the stale run to stop",
        async () => staleLog.some((l) => /left for recovery|gave-up:/.test(l)),
        60_000,
      ).catch((error: Error) => {
        throw new Error(`${error.message}; its log: ${staleLog.join(" | ")}`);
      });
      await watchRound.query("select pg_advisory_unlock_all()");
      await writer.query("commit");
      const ended = await tripEnd(tripId);
      expect(ended.status, `${ended.error ?? ""} | ${staleLog.join(" | ")}`).toBe("rolled_back");
      expect(ended.attempts).toBe(2);
      const routes = await db().tenantRoute.findMany({ where: { planId, tenantKey: { in: deadlockSet } } });
      for (const r of routes)
        expect({ owner: r.ownerDatabaseId, frozen: r.frozen }).toEqual({ owner: null, frozen: false });
      await fencesEqualMap();
    } finally {
      await writer.query("rollback").catch(() => {});
      await writer.end().catch(() => {});
      await watchRound.query("select pg_advisory_unlock_all()").catch(() => {});
      watchRound.release();
      for (const { down, up } of pairs) {
        down.destroy();
        up.destroy();
      }
      proxy.close();
      await run?.stop().catch(() => {});
    }
    expect(unhandled).toEqual([]);
  });
  /** Whether the stale run's lock session has ended on the control plane's server. */
  async function staleSessionGone(): Promise<boolean> {
    const { rows } = await control.pool.query<{ n: number }>(
      "select count(*)::int as n from pg_stat_activity where application_name = 'bp3-stale2'",
    );
    return rows[0]?.n === 0;
  }

  it("a run cut off from its lock without hearing it records no step of the trip once the lock is gone", {
    timeout: 180_000,
  }, async () => {
    unhandled.length = 0;
    for (const t of deadlockSet) {
      const route = await db().tenantRoute.findUnique({
        where: { planId_tenantKey: { planId, tenantKey: t } },
      });
      if (!route?.ownerDatabaseId) await cutOver(t); // rolled back by test 1
    }
    // The stale run's lock session goes through a proxy that can cut it off silently: the server
    // ends the session (the lock is free), the run's client hears nothing.
    const target = new URL(control.url);
    const pairs: { down: net.Socket; up: net.Socket }[] = [];
    const proxy = net.createServer((down) => {
      const up = net.connect(Number(target.port || 5432), target.hostname);
      down.on("error", () => {});
      up.on("error", () => {});
      down.pipe(up);
      up.pipe(down);
      pairs.push({ down, up });
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const via = new URL(control.url);
    via.hostname = "127.0.0.1";
    via.port = String((proxy.address() as net.AddressInfo).port);
    const lock = new pg.Client({ connectionString: via.toString(), application_name: "bp3-stale2" });
    lock.on("error", () => {});
    await lock.connect();
    // A writer of the set on shard-0: the stale run's fence waits for it until the server has
    // ended the stale run's lock session; then the fence goes on and the run writes its "fenced".
    const writer = new pg.Client({ connectionString: shardAt(0).url });
    writer.on("error", () => {});
    await writer.connect();
    await writer.query("begin");
    await insertInvoice(writer, deadlockSet[0] ?? "", 333);
    const staleLog: string[] = [];
    let run: ReturnType<typeof startRollbackRun> | null = null;
    try {
      // The trip, its lock taken by the stale run's session before the worker can see it.
      const tripId = await db().$transaction(async (tx) => {
        const { tripId: id } = await emitTrip(
          tx,
          {
            planId,
            scope: { kind: "tenants", tenants: deadlockSet },
            trigger: "manual",
            actor,
            reason: "stale run, step",
            budgetMs: 6_000,
            tenantCount: deadlockSet.length,
          },
          auditTripAs(actor),
        );
        await lock.query("select pg_advisory_lock($1, hashtext($2))", [BREAKER_LOCK_CLASS, id]);
        return id;
      });
      const engine = systemActor("bp3-stale", "engine@shardshift");
      run = startRollbackRun(tripId, {
        worker: "stale2",
        controlPlaneUrl: control.url,
        audit: auditRoutingChangesAs(engine),
        breakerAudit: auditBreakerEventsAs(engine),
        auditDraft: draftRoutingAuditAs(engine),
        connection: lock,
        log: (m) => {
          staleLog.push(m);
          if (/\] froze \d+ tenants/.test(m)) {
            for (const { down, up } of pairs) {
              down.unpipe(up);
              up.unpipe(down);
              up.destroy();
            }
          }
        },
      });
      // The server ends the stale run's session (its lock is free: the worker may take the trip
      // over); the stale run heard nothing. Then its fence completes.
      await waitFor(
        "the stale run's lock session to end on the server",
        async () => {
          if (!staleLog.some((l) => /\] froze \d+ tenants/.test(l))) return false;
          return staleSessionGone();
        },
        30_000,
      );
      await writer.query("commit");
      // Its next write of the trip (the fence's step) changes nothing, and the run stops.
      await waitFor(
        "the stale run to stop at its next write of the trip",
        async () => staleLog.some((l) => /no longer holds the trip's lock/.test(l)),
        30_000,
      ).catch((error: Error) => {
        throw new Error(`${error.message}: ${staleLog.join(" | ")}`);
      });
      const ended = await tripEnd(tripId);
      expect(ended.status, `${ended.error ?? ""} | ${staleLog.join(" | ")}`).toBe("rolled_back");
      expect(ended.attempts).toBe(2);
      const routes = await db().tenantRoute.findMany({ where: { planId, tenantKey: { in: deadlockSet } } });
      for (const r of routes)
        expect({ owner: r.ownerDatabaseId, frozen: r.frozen }).toEqual({ owner: null, frozen: false });
      await fencesEqualMap();
    } finally {
      await writer.query("rollback").catch(() => {});
      await writer.end().catch(() => {});
      for (const { down, up } of pairs) {
        down.destroy();
        up.destroy();
      }
      proxy.close();
      await run?.stop().catch(() => {});
    }
    expect(unhandled).toEqual([]);
  });
});
