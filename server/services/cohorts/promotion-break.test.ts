// Adversarial checks of a promotion's driver (issue 14) on a real control plane, without servers
// to move data: what it does when the breaker trips while it runs.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitFor } from "../../testing/worker-process";
import { type Actor, systemActor } from "../actor";
import { registerDatabase } from "../databases/databases";
import { createPlan } from "../plans/plans";
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

/** A plan whose one-step ladder holds `keys`, and a running promotion of it (all pending). */
async function runningPromotion(keys: string[], overriddenGates: string[], startedAt: Date) {
  const source = await registerDatabase(operator, { name: "legacy", kind: "legacy", url: legacy.url });
  const target = await registerDatabase(operator, { name: "shard", kind: "shard", url: shard.url });
  const plan = await createPlan(operator, {
    name: "break",
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
      concurrency: 1,
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
