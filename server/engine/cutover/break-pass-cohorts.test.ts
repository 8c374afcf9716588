// Break pass on cohort promotions and the per-tenant cutover's freeze gate, on a real control plane
// (the promotion's driver, the cutover runner's gate). Each test names the defect it found.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { AppError } from "../../errors";
import { type Actor, systemActor } from "../../services/actor";
import { moveTenant } from "../../services/cohorts/cohorts";
import { retryTenant } from "../../services/cohorts/promotion";
import { startPromotionWatch } from "../../services/cohorts/promotion-runner";
import { registerDatabase } from "../../services/databases/databases";
import { startDataMovement } from "../../services/movement/movement";
import { createPlan } from "../../services/plans/plans";
import { previewCutover, requestCutover } from "../../services/routing/cutover";
import { closeRoutingMapNotifier } from "../../services/routing/map-notifier";
import { installFences } from "../../services/routing/routing";
import { useControlPlane } from "../../testing/control-plane";
import { waitForCutoverEnd } from "../../testing/cutover-fixture";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitForBackfill } from "../../testing/movement-fixture";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";
import type { SourceSchema } from "../analysis/introspect";
import { ensureReverseSlot } from "../cdc/reverse-slot";
import { hashPlacement } from "../router/placement";
import { readFenceState } from "../routing/fence";
import { FENCE_SCHEMA } from "../routing/fence-sql";
import { advanceSequences, SEQUENCE_HEADROOM } from "./sequences";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
const operator: Actor = { ...systemActor("break-pass-cohorts", "operator@test"), role: "operator" };

beforeAll(async () => {
  control = await useControlPlane("bpc_control");
  legacy = await createTestDatabase("bpc_legacy");
  await legacy.pool.query("create table tenants (tenant_id bigint primary key)");
  shard = await createTestDatabase("bpc_shard");
}, 120_000);

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

let databases: { source: string; target: string } | null = null;

/** Frees the names planAtTwoWayCdc registers (this file's plans share one control plane). */
async function freeDatabaseNames() {
  for (const d of await db().database.findMany({ select: { id: true, name: true } }))
    await db().database.update({ where: { id: d.id }, data: { name: `${d.name}-${d.id.slice(0, 8)}` } });
}

/** A plan (data movement running) whose one-step ladder holds `keys`, and a running promotion of it. */
async function runningPromotion(keys: string[], concurrency = 1) {
  databases ??= {
    source: (await registerDatabase(operator, { name: "legacy", kind: "legacy", url: legacy.url })).id,
    target: (await registerDatabase(operator, { name: "shard", kind: "shard", url: shard.url })).id,
  };
  const plan = await createPlan(operator, {
    name: `break-pass ${keys.join(",")}`,
    sourceDatabaseId: databases.source,
    shardDatabaseIds: [databases.target],
    shardKeyColumn: "tenant_id",
  });
  await db().dataMovement.create({
    data: { planId: plan.id, status: "running", publicationName: "p", slotName: "s", sourceSchema: {} },
  });
  await db().cohort.create({
    data: { planId: plan.id, ordinal: 1, label: "all", policy: {}, assignedByEmail: "operator@test" },
  });
  await db().cohortMember.createMany({
    data: keys.map((tenantKey) => ({
      planId: plan.id,
      tenantKey,
      ordinal: 1,
      source: "drawn",
      assignedByEmail: "operator@test",
    })),
  });
  const promotion = await db().promotion.create({
    data: {
      planId: plan.id,
      ordinal: 1,
      status: "running",
      requestedByEmail: "admin@test",
      reason: "test",
      overriddenGates: [],
      concurrency,
      tenantsTotal: keys.length,
      startedAt: new Date(),
      tenants: { create: keys.map((tenantKey, i) => ({ tenantKey, position: i + 1 })) },
    },
  });
  return { planId: plan.id, promotionId: promotion.id };
}

describe("a promotion's tenant already on its shard", () => {
  // Defect found: the driver asked for each tenant's cutover with no direction, and a request
  // without one goes the way the tenant is NOT: a tenant already on its shard when the driver came
  // to it — its cutover committed and finished, then the worker was SIGKILLed before the tenant's
  // row said "requested"; or a person moved it meanwhile — was sent BACK to legacy by the
  // promotion (a to-legacy cutover in the promotion's name), instead of being counted as done.
  it("is counted as done, and no cutover back to legacy is asked for", { timeout: 90_000 }, async () => {
    const { planId, promotionId } = await runningPromotion(["61"]);
    // The attempt the killed driver asked for, finished: the tenant is on its shard.
    await db().tenantCutover.create({
      data: {
        planId,
        tenantKey: "61",
        direction: "to-shard",
        fromDatabaseId: null,
        toDatabaseId: databases?.target ?? null,
        status: "done",
        requestedByEmail: "admin@test",
        reason: "Promotion of cohort 1: test",
        endedAt: new Date(),
      },
    });
    await db().tenantRoute.create({
      data: { planId, tenantKey: "61", ownerDatabaseId: databases?.target ?? null, version: 2n },
    });
    const watch = startPromotionWatch({ controlPlaneUrl: control.url, log: () => {}, intervalMs: 200 });
    try {
      await waitFor(
        "the driver to settle tenant 61",
        async () =>
          (
            await db().promotionTenant.findUniqueOrThrow({
              where: { promotionId_tenantKey: { promotionId, tenantKey: "61" } },
            })
          ).status !== "pending",
        30_000,
      );
    } finally {
      await watch.stop();
    }
    const attempts = await db().tenantCutover.findMany({ where: { planId, tenantKey: "61" } });
    expect(attempts.map((a) => a.direction)).toEqual(["to-shard"]);
    const tenant = await db().promotionTenant.findUniqueOrThrow({
      where: { promotionId_tenantKey: { promotionId, tenantKey: "61" } },
    });
    expect(tenant.status).toBe("done");
  });
});

describe("a retry that reopens a promotion the gates stopped", () => {
  // Defect found: retrying ONE aborted tenant of a promotion that had stopped with tenants never
  // asked for (a gate failed, or an operator stopped it) reopened the whole promotion, and its
  // driver stops on a failing gate only: with a gate that cannot see (inconclusive: here no lag
  // was ever measured) every pending tenant of the cohort was cut over — what promote() refuses
  // unless an admin overrides it with a reason, done by an operator with no override at all.
  it("is refused while a gate does not pass, its pending tenants left unasked", {
    timeout: 60_000,
  }, async () => {
    const { promotionId } = await runningPromotion(["71", "72", "73"]);
    await db().promotion.update({
      where: { id: promotionId },
      data: { status: "failed", stoppedBy: "gate", endedAt: new Date(), tenantsAborted: 1 },
    });
    await db().promotionTenant.update({
      where: { promotionId_tenantKey: { promotionId, tenantKey: "71" } },
      data: { status: "aborted", error: "The freeze budget ran out" },
    });
    const outcome = await retryTenant(operator, { promotionId, tenantKey: "71", reason: "again" }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(outcome).toBeInstanceOf(AppError);
    expect((outcome as AppError).message).toMatch(/Forward lag .* is inconclusive/);
    const row = await db().promotion.findUniqueOrThrow({ where: { id: promotionId } });
    expect(row.status).toBe("failed");
    const tenants = await db().promotionTenant.findMany({
      where: { promotionId },
      orderBy: { position: "asc" },
    });
    expect(tenants.map((t) => t.status)).toEqual(["aborted", "pending", "pending"]);
  });
});

describe("a sequence whose next value has not been taken yet (is_called false)", () => {
  // Defect found: the sequence step read each sequence with pg_sequence_last_value, which is NULL
  // while the sequence's next value has not been handed out — after `setval(s, n, false)` (the
  // usual "next id = max + 1" reset after an import), ALTER SEQUENCE … RESTART, TRUNCATE …
  // RESTART IDENTITY — and read NULL as 0. On the old owner that put the new owner's floor at the
  // headroom alone, below ids the tenant already has (its next inserts there collide with its own
  // rows); on the new owner it read a sequence standing at millions as 0 and set it back down to
  // the floor ("never lowered" broken: the ids between are handed out again).
  const SEQ = "public.bp_items_id_seq";
  beforeAll(async () => {
    for (const pool of [legacy.pool, shard.pool])
      await pool.query(
        "create table if not exists bp_items (tenant_id bigint, id bigserial, primary key (tenant_id, id))",
      );
  });

  it("the old owner's pending next value counts: the new owner starts past it", async () => {
    await legacy.pool.query("select setval($1, 5000000, false)", [SEQ]);
    await shard.pool.query("select setval($1, 1, false)", [SEQ]);
    await advanceSequences(legacy.pool, shard.pool, [SEQ]);
    const { rows } = await shard.pool.query<{ v: string }>("select nextval($1)::text as v", [SEQ]);
    expect(BigInt(rows[0]?.v ?? "0")).toBeGreaterThanOrEqual(5_000_000n + SEQUENCE_HEADROOM);
  });

  it("the new owner's pending next value is never lowered", async () => {
    await legacy.pool.query("select setval($1, 10, true)", [SEQ]);
    await shard.pool.query("select setval($1, 9000000, false)", [SEQ]);
    await advanceSequences(legacy.pool, shard.pool, [SEQ]);
    const { rows } = await shard.pool.query<{ v: string }>("select nextval($1)::text as v", [SEQ]);
    expect(BigInt(rows[0]?.v ?? "0")).toBeGreaterThanOrEqual(9_000_000n);
  });
});

describe("a trip between the promote and the driver's claim", () => {
  // Defect found: a trip stops a promotion past an overridden breaker gate only when it was made
  // after the promotion STARTED (its driver's claim): a trip between the admin's promote (the gates
  // they overrode judged then) and the claim — a second or so, or as long as no worker ran — was
  // neither covered by the override nor seen as new, so the driver went on asking for cutovers with
  // the breaker rolled back and not re-armed (refused while the rollback ran: every tenant burnt to
  // "aborted" and the promotion "done"; accepted once it had rolled back, with no automatic trip
  // to protect them).
  it("stops the promotion before its first wave", { timeout: 60_000 }, async () => {
    const keys = ["81", "82", "83"];
    const { planId, promotionId } = await runningPromotion(keys);
    // As promote() leaves it (an admin overrode the breaker gate: an old trip), not yet claimed.
    await db().promotion.update({
      where: { id: promotionId },
      data: {
        status: "requested",
        startedAt: null,
        overriddenGates: ["breaker"],
        createdAt: new Date(Date.now() - 2_000),
      },
    });
    await db().breakerTrip.create({
      data: {
        planId,
        status: "rolled_back",
        scope: { kind: "all" },
        trigger: "forward-lag",
        requestedByEmail: "rule:forward-lag@shardshift",
        reason: "forward-lag: over its limit",
      },
    });
    const watch = startPromotionWatch({ controlPlaneUrl: control.url, log: () => {}, intervalMs: 200 });
    try {
      await waitFor(
        "the promotion to end",
        async () =>
          ["done", "stopped", "failed"].includes(
            (await db().promotion.findUniqueOrThrow({ where: { id: promotionId } })).status,
          ),
        30_000,
      );
    } finally {
      await watch.stop();
    }
    const row = await db().promotion.findUniqueOrThrow({ where: { id: promotionId } });
    expect([row.status, row.stoppedBy]).toEqual(["failed", "gate"]);
    expect((row.stopJudgement as { id?: string } | null)?.id).toBe("breaker");
    const tenants = await db().promotionTenant.findMany({
      where: { promotionId },
      orderBy: { position: "asc" },
    });
    expect(tenants.map((t) => t.status)).toEqual(keys.map(() => "pending"));
    expect(await db().tenantCutover.count({ where: { planId } })).toBe(0);
  });
});

describe("a tenant moved out of the cohort while its promotion runs", () => {
  // Defect found: moving a tenant out of the cohort being promoted — held on legacy (in no cohort),
  // or to a later cohort — was accepted while the tenant was still pending on that promotion's work
  // list, and the driver went on and cut it over anyway: the operator's audited hold undone by the
  // promotion without a word.
  it("is not cut over, and the promotion says why", { timeout: 60_000 }, async () => {
    const { planId, promotionId } = await runningPromotion(["91"]);
    await db().tenantCensus.create({
      data: { planId, tableName: "public.tenants", tenantKey: "91", position: 0, rows: 1n, rowsBefore: 0n },
    });
    await db().promotion.update({ where: { id: promotionId }, data: { status: "paused" } });
    await moveTenant(operator, { planId, tenantKey: "91", ordinal: null, reason: "do not move: audit" });
    await db().promotion.update({ where: { id: promotionId }, data: { status: "running" } });
    const watch = startPromotionWatch({ controlPlaneUrl: control.url, log: () => {}, intervalMs: 200 });
    try {
      await waitFor(
        "the driver to settle tenant 91",
        async () =>
          (
            await db().promotionTenant.findUniqueOrThrow({
              where: { promotionId_tenantKey: { promotionId, tenantKey: "91" } },
            })
          ).status !== "pending",
        30_000,
      );
    } finally {
      await watch.stop();
    }
    expect(await db().tenantCutover.count({ where: { planId, tenantKey: "91" } })).toBe(0);
    const tenant = await db().promotionTenant.findUniqueOrThrow({
      where: { promotionId_tenantKey: { promotionId, tenantKey: "91" } },
    });
    expect(tenant.status).toBe("aborted");
    expect(tenant.error).toMatch(/no longer in cohort 1/);
  });
});

describe("a new owner that stops answering", () => {
  // Defect found: inside the freeze (the worker's freeze gate held) the runner read the new owner's
  // fence state, set its sequences and polled its drain with no bound: a new owner that stopped
  // answering (here: its fence_state table locked by another session; in production a hung or
  // partitioned shard, whose socket answers nothing for as long as TCP keeps it) held the attempt
  // there for as long as that lasted — the tenant frozen past its budget, writes held, and the gate
  // slot taken, so FREEZES_AT_ONCE such attempts starved every other cutover of the worker.
  // The freeze's work on the new owner now ends at the budget's deadline: the attempt aborts and
  // writes resume on the old owner.
  // Defects found next (same hang, before and after the freeze): the pre-check's calls to the plan's
  // databases had no bound either (the attempt stayed "prechecking" as long as the new owner did
  // not answer: a scheduler slot taken, a promotion waiting for it never finishing), and the abort's
  // fence sync waited on the new owner (the attempt stayed "aborting" ~56 s after it had unfrozen
  // the tenant). Both are bounded now; the fence watch brings the late fence in line once it answers.
  const BUDGET_MS = 3_000;
  let legacy2: TestDatabase;
  let shards2: TestDatabase[];
  let worker: Worker | null = null;
  let planId = "";
  beforeAll(async () => {
    legacy2 = await createTestDatabase("bpc_legacy2");
    shards2 = [await createTestDatabase("bpc_shard20"), await createTestDatabase("bpc_shard21")];
    await freeDatabaseNames();
    await loadDemoDataset(legacy2.pool, { tenants: 12, rows: 2_000, seed: 3 });
    const plan = await planAtTwoWayCdc(
      operator,
      "break-pass hung new owner",
      legacy2.url,
      shards2.map((s) => s.url),
    );
    planId = plan.id;
    await startDataMovement(operator, { planId, reason: "go", resetShards: true });
    worker = await startWorker(control.url, {
      log: (m) => {
        if (process.env.BREAK_TEST_LOG && (m.includes("[cutover") || m.includes("[fence")))
          console.log(`${new Date().toISOString()} ${m}`);
      },
    });
    await waitForBackfill(planId, 90_000);
    const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId } });
    await installFences(operator, { planId, reason: "fences first" });
    for (const [ordinal, s] of shards2.entries())
      await ensureReverseSlot(s.pool, {
        planId,
        shardOrdinal: ordinal,
        schema: movement.sourceSchema as unknown as SourceSchema,
      });
  }, 150_000);
  afterAll(async () => {
    await worker?.stop();
    await closeRoutingMapNotifier();
    await legacy2?.drop();
    for (const s of shards2 ?? []) await s.drop();
  });

  /** The tenant's new owner and a session of it, holding `lockSql` in an open transaction. */
  async function lockOnNewOwner(tenant: string, lockSql: string) {
    const ordinal = hashPlacement(2).shardFor(tenant);
    const newOwner = shards2[ordinal] as TestDatabase;
    await waitFor(
      "no blocker",
      async () => (await previewCutover({ planId, tenantKey: tenant })).blockers.length === 0,
      60_000,
    );
    const locker = new pg.Client({ connectionString: newOwner.url });
    await locker.connect();
    await locker.query("begin");
    await locker.query(lockSql);
    const plan = await db().plan.findUniqueOrThrow({
      where: { id: planId },
      select: { shards: { orderBy: { ordinal: "asc" }, select: { database: { select: { name: true } } } } },
    });
    const name = plan.shards[ordinal]?.database.name as string;
    return {
      newOwner,
      name,
      locker,
      async release() {
        await locker.query("rollback").catch(() => {});
        await locker.end().catch(() => {});
      },
    };
  }

  it("the pre-check gives up on it: aborted, saying which database, nothing frozen", {
    timeout: 60_000,
  }, async () => {
    const TENANT = "7";
    // What the pre-check reads on the new owner first (its reverse slot) cannot be read.
    const hung = await lockOnNewOwner(
      TENANT,
      `lock table ${FENCE_SCHEMA}.reverse_slot in access exclusive mode`,
    );
    try {
      const { cutoverId } = await requestCutover(operator, {
        planId,
        tenantKey: TENANT,
        reason: "new owner hangs in the pre-check",
        budgetMs: BUDGET_MS,
      });
      // Ends while the new owner still does not answer (without the bound: "prechecking" for as
      // long as the lock is held, past this wait).
      const ended = await waitForCutoverEnd(cutoverId, 30_000);
      expect(ended.status).toBe("aborted");
      expect(ended.freezeStartedAt).toBeNull();
      expect(ended.error).toContain(`no answer from ${hung.name}`);
      expect(ended.error).toMatch(/nothing was frozen.*request the cutover again/);
      const route = await db().tenantRoute.findUnique({
        where: { planId_tenantKey: { planId, tenantKey: TENANT } },
      });
      expect(route?.frozen ?? false).toBe(false);
      expect(route?.ownerDatabaseId ?? null).toBeNull();
    } finally {
      await hung.release();
    }
  });

  it("aborts at the budget, the tenant unfrozen, and ends without waiting for it", {
    timeout: 60_000,
  }, async () => {
    const TENANT = "5";
    // The new owner's fence state cannot be read: nothing before the freeze reads it.
    const hung = await lockOnNewOwner(
      TENANT,
      `lock table ${FENCE_SCHEMA}.fence_state in access exclusive mode`,
    );
    try {
      const { cutoverId } = await requestCutover(operator, {
        planId,
        tenantKey: TENANT,
        reason: "new owner hangs",
        budgetMs: BUDGET_MS,
      });
      // The freeze ends within the budget (plus the abort's map change): the map no longer holds
      // the tenant's writes, its old owner still owns it.
      const released = await waitFor(
        "the tenant's freeze to end",
        async () => {
          const row = await db().tenantCutover.findUniqueOrThrow({ where: { id: cutoverId } });
          const route = await db().tenantRoute.findUnique({
            where: { planId_tenantKey: { planId, tenantKey: TENANT } },
          });
          return row.freezeStartedAt && route && !route.frozen ? { row, route, at: Date.now() } : null;
        },
        30_000,
      );
      expect(["aborting", "aborted"]).toContain(released.row.status);
      expect(released.route.ownerDatabaseId).toBeNull();
      expect(released.at - (released.row.freezeStartedAt as Date).getTime()).toBeLessThan(BUDGET_MS + 10_000);
      // The attempt ends while the new owner still does not answer: its fence sync is bounded.
      const ended = await waitForCutoverEnd(cutoverId, 15_000);
      expect(ended.status).toBe("aborted");
      // The old owner's fence, which answers, no longer holds the tenant's writes.
      const legacyFence = await readFenceState(legacy2.pool);
      const map = await db().routingMap.findUniqueOrThrow({ where: { planId } });
      expect(legacyFence?.mapVersion).toBe(Number(map.version));
      // Once the new owner answers, the fence watch brings its fence up to the map.
      await hung.release();
      await waitFor(
        "the new owner's fence to reach the map",
        async () => {
          const [fence, current] = await Promise.all([
            readFenceState(hung.newOwner.pool),
            db().routingMap.findUniqueOrThrow({ where: { planId } }),
          ]);
          return fence && fence.mapVersion === Number(current.version) ? fence : null;
        },
        20_000,
      );
    } finally {
      await hung.release();
    }
  });
});
