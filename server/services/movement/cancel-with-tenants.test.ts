// Found by h-break: cancel's guard counted no tenant on a shard (a constant 0 written before cutovers
// existed), so a cancel at "Two-way CDC" dropped the slots while a shard owned a tenant — the
// tenant's writes there would never reach legacy again, and going back would lose them. A cutover
// in flight (even only requested) would put a tenant on a shard after the cancel, with no
// replication left: refused too. A request made while the movement is cancelling is refused, and
// the request and the cancel take the plan's row lock, so neither slips in after the other's check.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { systemActor } from "../actor";
import { requestCutover } from "../routing/cutover";
import { changeTenantRoutes } from "../routing/routing";
import { controlDataMovement, finishCancel, startDataMovement } from "./movement";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
const actor = systemActor("cancel-tenants-test", "engineer@test");

beforeAll(async () => {
  control = await useControlPlane("ct_control");
  legacy = await createTestDatabase("ct_legacy");
  shard = await createTestDatabase("ct_shard");
  await loadDemoDataset(legacy.pool, { tenants: 20, rows: 500, seed: 5 });
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

const cancel = (planId: string) =>
  controlDataMovement(actor, { planId, action: "cancel", reason: "stop it" });

describe("cancelling a data movement with tenants on shards", () => {
  it("is refused while a tenant is routed to a shard or a cutover is in flight", async () => {
    const plan = await planAtTwoWayCdc(actor, "cancel with tenants", legacy.url, [shard.url]);
    await startDataMovement(actor, { planId: plan.id, reason: "go" });
    const shardId = (await db().planShard.findFirstOrThrow({ where: { planId: plan.id } })).databaseId;

    await changeTenantRoutes(actor, {
      planId: plan.id,
      changes: [{ tenantKey: "3", owner: shardId }],
      reason: "tenant 3 to its shard",
    });
    await expect(cancel(plan.id)).rejects.toMatchObject({
      code: "PRECONDITION_FAILED",
      message: expect.stringMatching(/1 tenant is served by a shard/),
    });

    await changeTenantRoutes(actor, {
      planId: plan.id,
      changes: [{ tenantKey: "3", owner: "legacy" }],
      reason: "tenant 3 back",
    });
    const { cutoverId } = await requestCutover(actor, { planId: plan.id, tenantKey: "3", reason: "move" });
    await expect(cancel(plan.id)).rejects.toMatchObject({
      code: "PRECONDITION_FAILED",
      message: expect.stringMatching(/cutover.* in flight/),
    });
    expect(await db().auditEvent.count({ where: { planId: plan.id, action: "movement.cancel" } })).toBe(0);
    expect((await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } })).status).toBe(
      "running",
    );

    // The attempt ended (no worker runs here): the cancel goes through; a request while the
    // movement is cancelling is refused.
    await db().tenantCutover.update({ where: { id: cutoverId }, data: { status: "aborted" } });
    await cancel(plan.id);
    await expect(
      requestCutover(actor, { planId: plan.id, tenantKey: "3", reason: "move" }),
    ).rejects.toMatchObject({ code: "PRECONDITION_FAILED" });
    await finishCancel(plan.id);
  });
});
