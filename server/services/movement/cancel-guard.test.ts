// Cancel drops the replication slot the rollback path depends on: refused by the server from the
// breaker phase on (nothing changes, nothing is audited), and when allowed, many concurrent cancels
// make exactly one change with one audit event.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { systemActor } from "../actor";
import { controlDataMovement, finishCancel, replicationNames, startDataMovement } from "./movement";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
const actor = systemActor("cancel-guard-test", "engineer@test");

beforeAll(async () => {
  control = await useControlPlane("cg_control");
  legacy = await createTestDatabase("cg_legacy");
  shard = await createTestDatabase("cg_shard");
  await loadDemoDataset(legacy.pool, { tenants: 20, rows: 500, seed: 5 });
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

const cancelAudits = (planId: string) =>
  db().auditEvent.count({ where: { planId, action: "movement.cancel" } });

describe("cancelling a data movement", () => {
  it("is refused in the breaker phase, and exactly one of many concurrent cancels wins before it", async () => {
    const plan = await planAtTwoWayCdc(actor, "cancel guard", legacy.url, [shard.url]);
    await startDataMovement(actor, { planId: plan.id, reason: "go" });
    // The breaker phase cannot be entered through the state machine yet: put the plan there directly.
    await db().plan.update({ where: { id: plan.id }, data: { phase: "live_rollback" } });

    const refused = await Promise.allSettled(
      Array.from({ length: 10 }, () =>
        controlDataMovement(actor, { planId: plan.id, action: "cancel", reason: "stop it" }),
      ),
    );
    for (const r of refused) {
      expect(r.status).toBe("rejected");
      if (r.status === "rejected") {
        expect(r.reason).toMatchObject({ code: "PRECONDITION_FAILED" });
        expect((r.reason as Error).message).toMatch(/rollback path depends on this replication/);
      }
    }
    expect((await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } })).status).toBe(
      "running",
    );
    expect(await cancelAudits(plan.id)).toBe(0);
    const slot = await legacy.pool.query("select 1 from pg_replication_slots where slot_name = $1", [
      replicationNames(plan.id).slotName,
    ]);
    expect(slot.rowCount).toBe(1);

    await db().plan.update({ where: { id: plan.id }, data: { phase: "async_backfill" } });
    const raced = await Promise.allSettled(
      Array.from({ length: 12 }, () =>
        controlDataMovement(actor, { planId: plan.id, action: "cancel", reason: "stop it" }),
      ),
    );
    expect(raced.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(await cancelAudits(plan.id)).toBe(1);
    expect((await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } })).status).toBe(
      "cancelling",
    );
    await finishCancel(plan.id);
    const left = await legacy.pool.query("select 1 from pg_replication_slots where slot_name = $1", [
      replicationNames(plan.id).slotName,
    ]);
    expect(left.rowCount).toBe(0);
  });
});
