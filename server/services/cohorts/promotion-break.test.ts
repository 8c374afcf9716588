// Adversarial checks of a promotion's driver (issue 14) on a real control plane, without servers
// to move data: what it does when the breaker trips while it runs.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { AppError } from "../../errors";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitFor } from "../../testing/worker-process";
import { type Actor, systemActor } from "../actor";
import { registerDatabase } from "../databases/databases";
import { createPlan } from "../plans/plans";
import { listPromotions, pausePromotion, promote, retryTenant } from "./promotion";
import { startPromotionWatch } from "./promotion-runner";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
const operator: Actor = { ...systemActor("promotion-break", "operator@test"), role: "operator" };

beforeAll(async () => {
  control = await useControlPlane("pb_control");
  legacy = await createTestDatabase("pb_legacy");
  await legacy.pool.query("create table tenants (tenant_id bigint primary key)");
  shard = await createTestDatabase("pb_shard");
}, 120_000);

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

let databases: { source: string; target: string } | null = null;

/** A plan whose one-step ladder holds `keys`, and a running promotion of it (all pending). */
async function runningPromotion(keys: string[], overriddenGates: string[], startedAt: Date, concurrency = 1) {
  databases ??= {
    source: (await registerDatabase(operator, { name: "legacy", kind: "legacy", url: legacy.url })).id,
    target: (await registerDatabase(operator, { name: "shard", kind: "shard", url: shard.url })).id,
  };
  const source = { id: databases.source };
  const target = { id: databases.target };
  const plan = await createPlan(operator, {
    name: `break ${keys.join(",")}`,
    sourceDatabaseId: source.id,
    shardDatabaseIds: [target.id],
    shardKeyColumn: "tenant_id",
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
      overrideReason: overriddenGates.length ? "an old trip, cause fixed" : null,
      overriddenGates,
      concurrency,
      tenantsTotal: keys.length,
      startedAt,
      tenants: { create: keys.map((tenantKey, i) => ({ tenantKey, position: i + 1 })) },
    },
  });
  return { planId: plan.id, promotionId: promotion.id };
}

/** A trip as emitTrip records it: the row and the engine event the gates count. */
async function trip(planId: string, status: string) {
  await db().breakerTrip.create({
    data: {
      planId,
      status,
      scope: { kind: "all" },
      trigger: "forward-lag",
      requestedByEmail: "rule:forward-lag@shardshift",
      reason: "forward-lag: over its limit",
    },
  });
  await db().engineEvent.create({
    data: { planId, level: "error", source: "breaker", message: "Breaker tripped (rule forward-lag)" },
  });
}

describe("a promotion when the breaker trips", () => {
  // Defect found: an admin who promoted past the breaker gate (an earlier trip in the window) made
  // the driver ignore that gate for the whole promotion, so a NEW trip mid-promotion did not stop
  // it: it went on asking for cutovers — refused while the rollback ran (every pending tenant
  // burnt to "aborted", the promotion "done"), accepted again once the trip had rolled back and
  // left the breaker disarmed (tenants cut over with no automatic trip to protect them).
  it("a trip after the promotion started stops it, even past an overridden breaker gate", {
    timeout: 90_000,
  }, async () => {
    const keys = ["1", "2", "3", "4", "5", "6"];
    const { planId, promotionId } = await runningPromotion(keys, ["breaker"], new Date(Date.now() - 1_000));
    await trip(planId, "rolled_back");
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
    const tenants = await db().promotionTenant.findMany({ where: { promotionId } });
    expect(tenants.map((t) => t.status)).toEqual(keys.map(() => "pending"));
  });
});

describe("a promotion paused while its driver asks for a wave", () => {
  // Defect found: the driver read the status once per round and then asked for the whole wave
  // (`concurrency` tenants), so a pause (or stop) acknowledged to the operator while it was asking
  // did not keep the rest of that wave from being requested.
  it("asks for no tenant after the pause committed", { timeout: 90_000 }, async () => {
    const keys = ["11", "12", "13"];
    const { promotionId } = await runningPromotion(keys, [], new Date(), 3);
    // Hold tenant 11's row: the driver's bookkeeping of its (refused: no data movement) request
    // waits on it, mid-wave, while the pause commits.
    const holder = new pg.Client({ connectionString: control.url });
    await holder.connect();
    await holder.query("begin");
    await holder.query(
      "select 1 from promotion_tenant where promotion_id = $1 and tenant_key = '11' for update",
      [promotionId],
    );
    const watch = startPromotionWatch({ controlPlaneUrl: control.url, log: () => {}, intervalMs: 200 });
    try {
      await waitFor(
        "the driver to wait on tenant 11's row",
        async () =>
          (
            await db().$queryRaw<unknown[]>`
              select 1 from pg_stat_activity
              where wait_event_type = 'Lock' and query ilike '%promotion_tenant%'`
          ).length > 0,
        30_000,
      );
      await pausePromotion(operator, { promotionId, reason: "watching the lag" });
      await holder.query("commit");
      // The driver's next round counts tenant 11's end: the wave is over.
      await waitFor(
        "the driver's next round",
        async () =>
          (await db().promotion.findUniqueOrThrow({ where: { id: promotionId } })).tenantsAborted >= 1,
        30_000,
      );
    } finally {
      await holder.end();
      await watch.stop();
    }
    const tenants = await db().promotionTenant.findMany({
      where: { promotionId },
      orderBy: { position: "asc" },
    });
    expect(tenants.map((t) => [t.tenantKey, t.status])).toEqual([
      ["11", "aborted"],
      ["12", "pending"],
      ["13", "pending"],
    ]);
  });
});

describe("promotions racing", () => {
  const admin: Actor = { ...systemActor("promotion-break", "admin@test"), role: "admin" };

  it("two promotes, and a retry reopening an ended promotion, leave one promotion in flight", {
    timeout: 90_000,
  }, async () => {
    const keys = ["21", "22", "23"];
    // An ended promotion of the plan with tenant 21 aborted (its retry reopens it).
    const { planId, promotionId } = await runningPromotion(keys, [], new Date());
    await db().promotion.update({
      where: { id: promotionId },
      data: { status: "done", endedAt: new Date() },
    });
    await db().promotionTenant.updateMany({
      where: { promotionId },
      data: { status: "aborted", error: "The freeze budget ran out" },
    });
    await db().dataMovement.create({
      data: { planId, status: "running", publicationName: "p", slotName: "s", sourceSchema: {} },
    });
    // The gates cannot see here (no lag measured): an admin promotes past them.
    const ask = { planId, ordinal: 1, reason: "race", overrideReason: "test: the gates cannot see" };
    const results = await Promise.allSettled([
      promote(admin, ask),
      promote(admin, ask),
      retryTenant(admin, { promotionId, tenantKey: "21", reason: "race" }),
    ]);
    const inFlight = await db().promotion.count({
      where: { planId, status: { notIn: ["done", "stopped", "failed"] } },
    });
    expect(inFlight).toBe(1);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    // Each loser is told why in the product's words, not with a database error.
    for (const r of results) {
      if (r.status === "rejected") {
        expect(r.reason).toBeInstanceOf(AppError);
        expect((r.reason as AppError).message).toMatch(/one promotion per plan|has ended/);
      }
    }
  });

  it("a retry that loses the race to a new promotion is refused in the product's words", {
    timeout: 90_000,
  }, async () => {
    const { planId, promotionId } = await runningPromotion(["31"], [], new Date());
    await db().promotion.update({
      where: { id: promotionId },
      data: { status: "done", endedAt: new Date() },
    });
    await db().promotionTenant.updateMany({ where: { promotionId }, data: { status: "aborted" } });
    // Another promotion of the plan, inserted but not yet committed when the retry looks for one.
    const other = new pg.Client({ connectionString: control.url });
    await other.connect();
    try {
      await other.query("begin");
      await other.query(
        "insert into promotion (id, plan_id, ordinal, status, requested_by_email, reason) values (gen_random_uuid(), $1, 1, 'running', 'x@test', 'race')",
        [planId],
      );
      const retry = retryTenant(admin, { promotionId, tenantKey: "31", reason: "race" });
      retry.catch(() => {});
      await waitFor(
        "the retry to wait on the other promotion",
        async () =>
          (
            await db().$queryRaw<unknown[]>`
              select 1 from pg_stat_activity where wait_event_type = 'Lock' and query ilike '%update%promotion%'`
          ).length > 0,
        30_000,
      );
      await other.query("commit");
      const outcome = await retry.then(
        () => null,
        (e: unknown) => e,
      );
      expect(outcome).toBeInstanceOf(AppError);
      expect((outcome as AppError).message).toMatch(/one promotion per plan|promotion is/);
    } finally {
      await other.end();
    }
  });
});

describe("a promotion's report after a rollback", () => {
  // Defect found: a tenant the promotion cut over ("done") and the breaker then rolled back to
  // legacy still counted as done — the promotion ended "done: N tenants on their shards", its
  // listing said "on shard", and it could not be asked for again (retry took aborted tenants
  // only). Now the report is judged against the routing map (back-on-legacy.ts).
  it("a done tenant that is back on legacy is not reported as on its shard", {
    timeout: 60_000,
  }, async () => {
    const { planId, promotionId } = await runningPromotion(["41"], [], new Date());
    // Its cutover finished, then a trip rolled it back: no owner on the map (on legacy).
    await db().promotionTenant.updateMany({ where: { promotionId }, data: { status: "done" } });
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
    const [listed] = await listPromotions({ planId, promotionId, limit: 1 });
    expect(listed?.counts.done).toBe(0);
    expect(listed?.counts.rolledBack).toBe(1);
    expect(listed?.tenants[0]?.status).toBe("rolled_back");
    expect((await db().promotion.findUniqueOrThrow({ where: { id: promotionId } })).tenantsDone).toBe(0);
  });

  it("names the trip that rolled it back, and takes it again once the breaker is re-armed", {
    timeout: 60_000,
  }, async () => {
    const { planId, promotionId } = await runningPromotion(["51", "52"], [], new Date());
    await db().promotion.update({
      where: { id: promotionId },
      data: { status: "done", endedAt: new Date() },
    });
    await db().promotionTenant.updateMany({ where: { promotionId }, data: { status: "done" } });
    // 52 is still on its shard; 51 was given back to legacy by the trip's one flip (version 7).
    await db().tenantRoute.createMany({
      data: [
        { planId, tenantKey: "51", ownerDatabaseId: null, version: 7n },
        { planId, tenantKey: "52", ownerDatabaseId: databases?.target ?? null, version: 3n },
      ],
    });
    const tripRow = await db().breakerTrip.create({
      data: {
        planId,
        status: "rolled_back",
        scope: { kind: "all" },
        trigger: "forward-lag",
        requestedByEmail: "rule:forward-lag@shardshift",
        reason: "forward-lag: 90 s over 60 s",
        flipVersion: 7n,
      },
    });
    const [listed] = await listPromotions({ planId, promotionId, limit: 1 });
    expect(listed?.counts).toMatchObject({ done: 1, rolledBack: 1 });
    const back = listed?.tenants.find((t) => t.tenant === "51");
    expect(back?.status).toBe("rolled_back");
    expect(back?.error).toMatch(
      /Rolled back to legacy by the breaker \(tripped by rule forward-lag at .*90 s over 60 s\)/,
    );

    // Not while the breaker is not armed: it would land on a shard with nothing to roll it back.
    await expect(retryTenant(operator, { promotionId, tenantKey: "51", reason: "again" })).rejects.toThrow(
      /rolled back to legacy and the breaker is rolled back: an admin re-arms it/,
    );
    // The tenant still on its shard is not retried.
    await expect(retryTenant(operator, { promotionId, tenantKey: "52", reason: "again" })).rejects.toThrow(
      /is on its shard in this promotion/,
    );
    await db().breakerTrip.update({ where: { id: tripRow.id }, data: { status: "armed" } });
    const retried = await retryTenant(operator, {
      promotionId,
      tenantKey: "51",
      reason: "cause fixed, again",
    });
    expect(retried.status).toBe("running");
    const row = await db().promotionTenant.findUniqueOrThrow({
      where: { promotionId_tenantKey: { promotionId, tenantKey: "51" } },
    });
    expect(row.status).toBe("pending");
    await db().promotion.update({
      where: { id: promotionId },
      data: { status: "stopped", endedAt: new Date() },
    });
  });
});
