// The plan's phase moves only when the engine's facts allow it, judged from the store: Two-way CDC
// is left only once the stream has confirmed changes, a step that does not exist yet cannot be
// entered, and of many concurrent advances exactly one wins, with one audit event.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { spawnWorker, type WorkerProcess, waitFor } from "../../testing/worker-process";
import { systemActor } from "../actor";
import { controlDataMovement, startDataMovement } from "../movement/movement";
import { getPlan, transitionPlan } from "./plans";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
let worker: WorkerProcess | null = null;
const actor = systemActor("phase-guard-test", "engineer@test");

beforeAll(async () => {
  control = await useControlPlane("pg_control");
  legacy = await createTestDatabase("pg_legacy");
  shard = await createTestDatabase("pg_shard");
  await loadDemoDataset(legacy.pool, { tenants: 30, rows: 3_000, seed: 9 });
});

afterAll(async () => {
  await worker?.kill();
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

const advances = (planId: string) => db().auditEvent.count({ where: { planId, action: "plan.advance" } });

describe("phase guards from the engine's facts", () => {
  it("leaves Two-way CDC only once CDC streams, and never enters a step that does not exist", {
    timeout: 120_000,
  }, async () => {
    const plan = await planAtTwoWayCdc(actor, "guarded", legacy.url, [shard.url]);
    const before = await advances(plan.id);
    const refused = await transitionPlan(actor, {
      planId: plan.id,
      expectedVersion: plan.version,
      event: "advance",
      reason: "too early",
    }).catch((e) => e);
    expect(refused).toMatchObject({ code: "PRECONDITION_FAILED" });
    expect(refused.message).toMatch(/Forward CDC is not streaming/);
    expect((await getPlan(plan.id)).phase).toBe("two_way_cdc");
    expect(await advances(plan.id)).toBe(before);

    await startDataMovement(actor, { planId: plan.id, reason: "go" });
    worker = spawnWorker();
    await waitFor(
      "CDC to confirm a change",
      async () => (await getPlan(plan.id)).available.advance.allowed,
      60_000,
    );
    const ready = await getPlan(plan.id);
    expect(ready.steps.find((s) => s.phase === "two_way_cdc")).toMatchObject({ state: "running" });

    const raced = await Promise.allSettled(
      Array.from({ length: 10 }, () =>
        transitionPlan(actor, {
          planId: plan.id,
          expectedVersion: ready.version,
          event: "advance",
          reason: "CDC streams",
        }),
      ),
    );
    expect(raced.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(await advances(plan.id)).toBe(before + 1);
    const moved = await getPlan(plan.id);
    expect(moved.phase).toBe("async_backfill");

    // Even with every table copied, bit-by-bit routing is entered only once cohort 1 may be promoted:
    // no ladder is drawn here.
    await waitFor(
      "every table copied",
      async () => (await getPlan(plan.id)).steps.find((s) => s.phase === "async_backfill")?.state === "done",
      90_000,
    );
    const blocked = (await getPlan(plan.id)).available.advance;
    expect(blocked).toEqual({
      allowed: false,
      reason: expect.stringMatching(/No cohort ladder is drawn: draw it on Cohorts/),
    });
    await controlDataMovement(actor, { planId: plan.id, action: "cancel", reason: "test over" });
    await waitFor("the cancel to finish", async () => {
      const m = await db().dataMovement.findUnique({ where: { planId: plan.id } });
      return m?.status === "cancelled";
    });
  });
});
