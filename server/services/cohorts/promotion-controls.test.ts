// A promotion's controls and its driver on a real control plane, without servers to move data:
// pause, resume and stop move the stored state (audited; refused with the reason when the state
// does not allow it), a retry reopens an ended promotion with the tenant back on the work list, and
// the worker's driver takes a promotion over by its lock and ends it from the rows alone (stopping
// with nothing in flight → stopped; running with every tenant settled → done).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitFor } from "../../testing/worker-process";
import { type Actor, systemActor } from "../actor";
import { registerDatabase } from "../databases/databases";
import { createPlan } from "../plans/plans";
import { pausePromotion, resumePromotion, retryTenant, stopPromotion } from "./promotion";
import { startPromotionWatch } from "./promotion-runner";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
const operator: Actor = { ...systemActor("promotion-controls", "operator@test"), role: "operator" };

beforeAll(async () => {
  control = await useControlPlane("pc_control");
  legacy = await createTestDatabase("pc_legacy");
  await legacy.pool.query("create table tenants (tenant_id bigint primary key)");
  shard = await createTestDatabase("pc_shard");
}, 120_000);

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

let databases: { source: string; target: string } | null = null;

async function planWithPromotion(status: string, tenants: { key: string; status: string }[]) {
  databases ??= {
    source: (await registerDatabase(operator, { name: "legacy", kind: "legacy", url: legacy.url })).id,
    target: (await registerDatabase(operator, { name: "shard", kind: "shard", url: shard.url })).id,
  };
  const { source, target } = { source: { id: databases.source }, target: { id: databases.target } };
  const plan = await createPlan(operator, {
    name: `controls ${status}`,
    sourceDatabaseId: source.id,
    shardDatabaseIds: [target.id],
    shardKeyColumn: "tenant_id",
  });
  // A one-step ladder holding the tenants, so the driver's gates have a cohort to judge.
  await db().cohort.create({
    data: { planId: plan.id, ordinal: 1, label: "all", policy: {}, assignedByEmail: "operator@test" },
  });
  await db().cohortMember.createMany({
    data: tenants.map((t) => ({
      planId: plan.id,
      tenantKey: t.key,
      ordinal: 1,
      source: "drawn",
      assignedByEmail: "operator@test",
    })),
  });
  // A tenant the promotion recorded as done is on its shard in the routing map (a done tenant the
  // map has on legacy is reported as rolled back: back-on-legacy.ts).
  await db().tenantRoute.createMany({
    data: tenants
      .filter((t) => t.status === "done")
      .map((t) => ({ planId: plan.id, tenantKey: t.key, ownerDatabaseId: target.id, version: 1n })),
  });
  const promotion = await db().promotion.create({
    data: {
      planId: plan.id,
      ordinal: 1,
      status,
      requestedByEmail: "operator@test",
      reason: "test",
      tenantsTotal: tenants.length,
      tenantsAborted: tenants.filter((t) => t.status === "aborted").length,
      startedAt: new Date(),
      tenants: {
        create: tenants.map((t, i) => ({
          tenantKey: t.key,
          position: i + 1,
          status: t.status,
          error: t.status === "aborted" ? "The freeze budget ran out" : null,
        })),
      },
    },
  });
  return { planId: plan.id, promotionId: promotion.id };
}

const statusOf = async (id: string) => (await db().promotion.findUniqueOrThrow({ where: { id } })).status;

describe("promotion controls", () => {
  it("pause, resume, stop and retry move the stored state, audited, and refuse what it does not allow", {
    timeout: 120_000,
  }, async () => {
    const { planId, promotionId } = await planWithPromotion("running", [
      { key: "1", status: "done" },
      { key: "2", status: "aborted" },
      { key: "3", status: "pending" },
    ]);
    const ask = { promotionId, reason: "watching the lag" };
    expect((await pausePromotion(operator, ask)).status).toBe("paused");
    await expect(pausePromotion(operator, ask)).rejects.toThrow(/already paused/);
    expect((await resumePromotion(operator, ask)).status).toBe("running");
    await expect(resumePromotion(operator, ask)).rejects.toThrow(/Only a paused promotion resumes/);
    expect((await stopPromotion(operator, ask)).status).toBe("stopping");
    expect((await db().promotion.findUniqueOrThrow({ where: { id: promotionId } })).stoppedBy).toBe(
      "operator",
    );
    await expect(retryTenant(operator, { ...ask, tenantKey: "2" })).rejects.toThrow(/is stopping/);
    await expect(retryTenant(operator, { ...ask, tenantKey: "1" })).rejects.toThrow(
      /on its shard in this promotion: only an aborted tenant, or one rolled back to legacy, is retried/,
    );

    // The driver ends a stopping promotion with nothing in flight: stopped.
    const watch = startPromotionWatch({ controlPlaneUrl: controlUrl(), log: () => {}, intervalMs: 200 });
    try {
      await waitFor(
        "the stop to be drained",
        async () => (await statusOf(promotionId)) === "stopped",
        30_000,
      );
      // A retry that would reopen it with tenant 3 never asked is judged as a promote is: refused
      // while the gates cannot see (no lag, no fences)...
      await expect(retryTenant(operator, { ...ask, tenantKey: "2" })).rejects.toThrow(
        /would reopen cohort 1's promotion .* is inconclusive/,
      );
      // ...unless an admin promoted past those gates (audited at the promote). Then it reopens with
      // the tenant pending, none fails, so the driver asks; with no data movement the request is
      // refused: the tenants are aborted with the request's reason, and the promotion is done.
      await db().promotion.update({
        where: { id: promotionId },
        data: { overriddenGates: ["forward-lag", "reverse-lag", "parity", "stray-writes"] },
      });
      expect((await retryTenant(operator, { ...ask, tenantKey: "2" })).status).toBe("running");
      await waitFor(
        "the reopened promotion to end",
        async () => (await statusOf(promotionId)) === "done",
        30_000,
      );
    } finally {
      await watch.stop();
    }
    const tenants = await db().promotionTenant.findMany({
      where: { promotionId },
      orderBy: { position: "asc" },
    });
    expect(tenants.map((t) => [t.tenantKey, t.status])).toEqual([
      ["1", "done"],
      ["2", "aborted"],
      ["3", "aborted"],
    ]);
    expect(tenants[1]?.error).toMatch(/data movement has not started/);
    const actions = (await db().auditEvent.findMany({ where: { planId }, orderBy: { at: "asc" } })).map(
      (e) => e.action,
    );
    expect(actions).toEqual(
      expect.arrayContaining([
        "cohorts.promotion.pause",
        "cohorts.promotion.resume",
        "cohorts.promotion.stop",
        "cohorts.promotion.retry",
      ]),
    );
  });

  it("the driver finishes a running promotion whose tenants all settled: done", {
    timeout: 60_000,
  }, async () => {
    const { promotionId } = await planWithPromotion("requested", [
      { key: "7", status: "done" },
      { key: "8", status: "aborted" },
    ]);
    const watch = startPromotionWatch({ controlPlaneUrl: controlUrl(), log: () => {}, intervalMs: 200 });
    try {
      await waitFor("the promotion to be done", async () => (await statusOf(promotionId)) === "done", 30_000);
    } finally {
      await watch.stop();
    }
    const row = await db().promotion.findUniqueOrThrow({ where: { id: promotionId } });
    expect([row.tenantsDone, row.tenantsAborted, row.endedAt !== null, row.worker !== null]).toEqual([
      1,
      1,
      true,
      true,
    ]);
  });
});

function controlUrl() {
  return control.url;
}
