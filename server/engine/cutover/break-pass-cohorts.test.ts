// Break pass on cohort promotions and the per-tenant cutover's freeze gate, on a real control plane
// (the promotion's driver, the cutover runner's gate). Each test names the defect it found.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { AppError } from "../../errors";
import { type Actor, systemActor } from "../../services/actor";
import { retryTenant } from "../../services/cohorts/promotion";
import { startPromotionWatch } from "../../services/cohorts/promotion-runner";
import { registerDatabase } from "../../services/databases/databases";
import { createPlan } from "../../services/plans/plans";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitFor } from "../../testing/worker-process";
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
