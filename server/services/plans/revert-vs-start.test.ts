// A revert out of "Two-way CDC" is refused while a data movement holds a slot, but transitionPlan
// read the movement without a lock: a start that claimed the movement (start-claim.ts, under the
// plan's row lock) between the revert's read and its write let both succeed, and the movement ran
// in the "Application router" phase, where nothing may touch the databases. Here the claim's
// transaction is held open on another connection so the interleaving is exact, not left to timing.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { AppError } from "../../errors";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { systemActor } from "../actor";
import { transitionPlan } from "./plans";

const actor = systemActor("revert-race", "engineer@test");
let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;

beforeAll(async () => {
  control = await useControlPlane("revert_race_cp");
  legacy = await createTestDatabase("revert_race_legacy");
  shard = await createTestDatabase("revert_race_shard");
  await loadDemoDataset(legacy.pool, { tenants: 5, rows: 100, seed: 3 });
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

describe("revert against a start's claim", () => {
  it("a claim committed while the revert was deciding makes the revert refused", async () => {
    const plan = await planAtTwoWayCdc(actor, "revert-race", legacy.url, [shard.url]);
    const claim = await control.pool.connect();
    try {
      // What claimStart does: lock the plan row, record the movement as preparing.
      await claim.query("begin");
      await claim.query("select 1 from plan where id = $1 for update", [plan.id]);
      const revert = transitionPlan(actor, {
        planId: plan.id,
        expectedVersion: plan.version,
        event: "revert",
        reason: "back to the router",
      }).then(
        () => null,
        (error: unknown) => error,
      );
      const deadline = Date.now() + 30_000;
      for (;;) {
        const { rows } = await control.pool.query<{ n: number }>(
          "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
        );
        if ((rows[0]?.n ?? 0) > 0) break;
        if (Date.now() > deadline) throw new Error("the revert never waited for the claim's lock");
        await new Promise((r) => setTimeout(r, 50));
      }
      await claim.query(
        `insert into data_movement (plan_id, status, publication_name, slot_name, started_at, updated_at, source_schema)
         values ($1, 'preparing', 'p', 's', now(), now(), '{"tables": []}')`,
        [plan.id],
      );
      await claim.query("commit");
      const error = await revert;
      expect(error).toBeInstanceOf(AppError);
      expect((error as AppError).message).toMatch(/Cancel it first/);
    } finally {
      claim.release();
    }
    const stored = await db().plan.findUniqueOrThrow({ where: { id: plan.id } });
    expect(stored.phase).toBe("two_way_cdc");
    expect(await db().auditEvent.count({ where: { planId: plan.id, action: "plan.revert" } })).toBe(0);
  });
});
