// Fence changes as WAL messages, with forward CDC running in a real worker (legacy → two shards):
// - syncFence writes its change as a transactional logical message and returns the freeze
//   position, which the transaction that carries the message ends after;
// - the drain: a fence change on legacy brings a QUIET shard's durable origin progress past that
//   position (the stream stamps every shard with the fence's transaction, rows for it or not);
// - ownership by log position: once legacy's fence gives a tenant to its shard, a write to it on
//   legacy that bypassed the fence's triggers is not applied to the shard and is recorded as a
//   stray write; a write before the change was applied; other tenants and reference tables flow.
import crypto from "node:crypto";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { systemActor } from "../../services/actor";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startMovementOn, waitForBackfill, waitForCatchUp } from "../../testing/movement-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";
import { hashPlacement } from "../router/placement";
import { type FenceRoute, installFence, LEGACY_OWNER_KEY, syncFence } from "../routing/fence";
import { FENCE_MESSAGE_PREFIX, FENCE_SQLSTATE } from "../routing/fence-sql";
import { installPlanFences, loadPlanFences } from "../routing/plan-fences";
import { CDC_STRAY_REASON } from "../routing/stray-writes";
import { forwardOriginName, waitForOriginProgress } from "./drain";
import { ReplicationStream } from "./replication-stream";
import { createPublication, createSlot, dropSlot, parseLsn } from "./slot";
import { readOriginProgress } from "./target-applier";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let worker: Worker;
let legacy: TestDatabase;
let shards: TestDatabase[];
let planId: string;
let slotName: string;
let slotLsn: bigint;
let shardIds: string[];
const actor = systemActor("fence-messages-test", "engineer@test");
const placement = hashPlacement(2);
/** Fence versions far above the routing map's, so the worker's fence watch leaves them alone. */
let version = 1_000;

const DDL = `
  create table accounts (tenant_id bigint not null, id bigint not null, name text, primary key (tenant_id, id));
  create table plans (id int primary key, name text);`;

function shard(ordinal: number): TestDatabase {
  const found = shards[ordinal];
  if (!found) throw new Error(`no shard ${ordinal}`);
  return found;
}

/** A tenant (as text) placed on shard `ordinal`, not in `except`. */
function tenantOn(ordinal: number, except: string[] = []): string {
  for (let t = 1; ; t++) {
    const key = String(t);
    if (placement.shardFor(key) === ordinal && !except.includes(key)) return key;
  }
}

/** A write that bypasses the fence's triggers: session_replication_role = replica, no origin. */
async function bypassing(pool: pg.Pool, sql: string, values: unknown[] = []) {
  const client = await pool.connect();
  try {
    await client.query("begin; set local session_replication_role = replica");
    await client.query(sql, values);
    await client.query("commit");
  } finally {
    client.release();
  }
}

async function hasAccount(db: TestDatabase, tenant: string, id: number): Promise<boolean> {
  const { rowCount } = await db.pool.query("select 1 from accounts where tenant_id = $1 and id = $2", [
    tenant,
    id,
  ]);
  return (rowCount ?? 0) > 0;
}

function route(tenantKey: string, ownerKey: string, frozen = false): FenceRoute {
  return { tenantKey, ownerKey, ownerName: ownerKey, frozen, version };
}

/** Changes legacy's fence directly (as the cutover does, step by step) and returns the freeze LSN. */
async function changeLegacyFence(routes: FenceRoute[]): Promise<bigint> {
  version++;
  const { lsn } = await syncFence(legacy.pool, {
    planId,
    databaseName: "legacy",
    routes: routes.map((r) => ({ ...r, version })),
    version,
  });
  return lsn;
}

beforeAll(async () => {
  control = await useControlPlane("fmsg_control");
  worker = await startWorker(control.url, { log: () => {} });
  legacy = await createTestDatabase("fmsg_legacy");
  shards = [await createTestDatabase("fmsg_shard0"), await createTestDatabase("fmsg_shard1")];
  for (const d of [legacy, ...shards]) await d.pool.query(DDL);
  await legacy.pool.query(`
    insert into accounts select t, i, 'initial' from generate_series(1, 8) t, generate_series(1, 3) i;
    insert into plans values (1, 'free');`);
  ({ planId, slotName } = await startMovementOn(
    actor,
    "fmsg",
    legacy.url,
    shards.map((s) => s.url),
  ));
  await waitForBackfill(planId);
  await waitForCatchUp(legacy.pool, slotName);
  const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId } });
  slotLsn = parseLsn(movement.slotLsn ?? "0/0");
  const plan = await db().plan.findUniqueOrThrow({
    where: { id: planId },
    include: { shards: { orderBy: { ordinal: "asc" } } },
  });
  shardIds = plan.shards.map((s) => s.databaseId);
  await installPlanFences(await loadPlanFences(planId));
}, 180_000);

afterAll(async () => {
  await worker?.stop();
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

describe("syncFence", () => {
  it("writes the change as a transactional logical message and returns a position its transaction ends after", async () => {
    const source = await createTestDatabase("fmsg_wal");
    const slot = `fmsg_wal_${crypto.randomBytes(3).toString("hex")}`;
    let stream: ReplicationStream | null = null;
    try {
      await source.pool.query(DDL);
      const fencePlan = crypto.randomUUID();
      await installFence(source.pool, {
        planId: fencePlan,
        self: { key: LEGACY_OWNER_KEY, name: "legacy" },
        legacyName: "legacy",
        shardKeyColumn: "tenant_id",
        tables: [{ qualified: "public.accounts", kind: "sharded" }],
      });
      await createPublication(source.pool, slot, [{ schema: "public", table: "accounts" }]);
      await createSlot(source.pool, slot);
      stream = await ReplicationStream.start({ connectionString: source.url, slot, publications: [slot] });

      const { lsn } = await syncFence(source.pool, {
        planId: fencePlan,
        databaseName: "legacy",
        routes: [
          { tenantKey: "5", ownerKey: "shard-a", ownerName: "a", frozen: true, version: 3 },
          { tenantKey: "6", ownerKey: LEGACY_OWNER_KEY, ownerName: "legacy", frozen: false, version: 3 },
        ],
        version: 3,
      });

      const deadline = Date.now() + 15_000;
      let found: Awaited<ReturnType<ReplicationStream["readBatch"]>> = null;
      while (!found?.transactions.length && Date.now() < deadline) {
        found = await stream.readBatch({ maxWaitMs: 10, idleTimeoutMs: 250 });
      }
      const tx = found?.transactions[0];
      // The fence's rows are not published: the message is the transaction's only change.
      expect(tx?.changes.map((c) => c.kind)).toEqual(["message"]);
      const message = tx?.changes[0];
      if (message?.kind !== "message") throw new Error("no message");
      expect(message.prefix).toBe(FENCE_MESSAGE_PREFIX);
      expect(JSON.parse(message.content.toString("utf8"))).toEqual({
        planId: fencePlan,
        version: 3,
        routes: [
          { tenantKey: "5", ownerKey: "shard-a", frozen: true },
          { tenantKey: "6", ownerKey: LEGACY_OWNER_KEY, frozen: false },
        ],
      });
      // The freeze position: after the message, before the end of its transaction's commit.
      expect(lsn >= message.lsn).toBe(true);
      expect(lsn < (tx?.endLsn ?? 0n)).toBe(true);
    } finally {
      await stream?.stop();
      await dropSlot(source.pool, slot, { terminateActive: true }).catch(() => {});
      await source.drop();
    }
  });
});

describe("forward CDC follows legacy's fence by log position", () => {
  it("drains a quiet shard: a fence change on legacy brings every shard's durable origin past its freeze position", async () => {
    await waitForCatchUp(legacy.pool, slotName);
    const origins = shards.map((_, k) => forwardOriginName(slotName, slotLsn, k));
    const before = await Promise.all(shards.map((s, k) => readOriginProgress(s.pool, origins[k] ?? "")));
    // A tenant no row of which exists anywhere: the change carries nothing for any shard.
    const lsn = await changeLegacyFence([route("424242", LEGACY_OWNER_KEY, true)]);
    for (const [k, s] of shards.entries()) {
      expect(before[k] ?? 0n).toBeLessThan(lsn);
      const outcome = await waitForOriginProgress(s.pool, origins[k] ?? "", lsn, Date.now() + 20_000);
      expect(outcome.reached, `shard ${k}'s origin reached the freeze position`).toBe(true);
    }
    // A deadline that has passed answers at once, with the progress it read.
    const unreachable = await waitForOriginProgress(shard(0).pool, origins[0] ?? "", lsn + (1n << 40n), 0);
    expect(unreachable.reached).toBe(false);
    expect(unreachable.progress).not.toBeNull();
    await changeLegacyFence([route("424242", LEGACY_OWNER_KEY, false)]);
  });

  it("drops, and records as a stray write, a bypassing write to a tenant legacy gave away; earlier writes and other tenants flow", async () => {
    const tenant = tenantOn(1);
    const other = tenantOn(0);
    const owner = shardIds[1] ?? "";
    await legacy.pool.query("insert into accounts values ($1, 100, 'before the flip')", [tenant]);
    await waitFor("the write before the flip to reach its shard", () => hasAccount(shard(1), tenant, 100));

    // Legacy's fence gives the tenant to its shard (the cutover's flip, seen from legacy).
    await changeLegacyFence([route(tenant, owner)]);
    // The application is refused there now…
    const refused = await legacy.pool
      .query("insert into accounts values ($1, 101, 'refused')", [tenant])
      .then(
        () => null,
        (error: { code?: string }) => error.code,
      );
    expect(refused).toBe(FENCE_SQLSTATE.notOwner);
    // …but a session that bypasses the triggers writes it anyway.
    await bypassing(legacy.pool, "insert into accounts values ($1, 102, 'after the flip')", [tenant]);
    // Other tenants and reference tables flow, after it in the stream.
    await legacy.pool.query("insert into accounts values ($1, 100, 'another tenant')", [other]);
    await legacy.pool.query("insert into plans values (2, 'after the flip')");

    await waitFor("the other tenant's write to reach its shard", () => hasAccount(shard(0), other, 100));
    for (const s of shards) {
      await waitFor(
        "the reference row to reach every shard",
        async () => ((await s.pool.query("select 1 from plans where id = 2")).rowCount ?? 0) > 0,
      );
    }
    const stray = await waitFor("the stray write to be recorded", async () =>
      db().strayWrite.findFirst({ where: { planId, reason: CDC_STRAY_REASON, tenantKey: tenant } }),
    );
    expect(stray).toMatchObject({ databaseName: "fmsg-legacy", count: 1 });
    expect(await hasAccount(shard(1), tenant, 102)).toBe(false);
    expect(await hasAccount(shard(1), tenant, 100)).toBe(true);
    // Exactly one report, however many times the worker's stream met it.
    expect(await db().strayWrite.count({ where: { planId, reason: CDC_STRAY_REASON } })).toBe(1);

    // Given back to legacy: its writes flow again.
    await changeLegacyFence([route(tenant, LEGACY_OWNER_KEY)]);
    await legacy.pool.query("insert into accounts values ($1, 103, 'back on legacy')", [tenant]);
    await waitFor("the tenant's writes to flow again", () => hasAccount(shard(1), tenant, 103));
    expect(await hasAccount(shard(1), tenant, 102)).toBe(false);
  });
});
