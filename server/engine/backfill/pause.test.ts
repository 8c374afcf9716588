// Pause is an operator's brake: it must hold within about a second at any rate, also right after
// the rate was throttled down (when the copier still owes the token bucket for the big chunks it
// copied at the old rate). "Held" is judged from the engine's facts: no copier holds a task.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { DEFAULT_PLAN_SETTINGS } from "../../schemas/plan";
import { systemActor } from "../../services/actor";
import {
  controlDataMovement,
  getMovementStatus,
  setBackfillRate,
  startDataMovement,
} from "../../services/movement/movement";
import { createPlan, transitionPlan } from "../../services/plans/plans";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { spawnWorker, type WorkerProcess, waitFor } from "../../testing/worker-process";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
let worker: WorkerProcess | null = null;
const actor = systemActor("pause-test", "engineer@test");

beforeAll(async () => {
  control = await useControlPlane("pause_control");
  legacy = await createTestDatabase("pause_legacy");
  shards = [await createTestDatabase("pause_shard0"), await createTestDatabase("pause_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: 300, rows: 200_000, seed: 7 });
});

afterAll(async () => {
  await worker?.kill();
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

const copied = async (planId: string) => (await getMovementStatus(planId, 1)).totals.rowsCopied;

describe("pausing the backfill", () => {
  it("holds within a few seconds at 1,000 rows/s, right after throttling down", {
    timeout: 180_000,
  }, async () => {
    const plan = await planAtTwoWayCdc(
      actor,
      "pause test",
      legacy.url,
      shards.map((s) => s.url),
    );
    await setBackfillRate(actor, { planId: plan.id, rowsPerSecond: 200_000, reason: "copy fast" });
    await startDataMovement(actor, { planId: plan.id, reason: "go" });
    worker = spawnWorker();
    await waitFor("the copy to be well under way", async () => (await copied(plan.id)) > 30_000, 120_000);

    await setBackfillRate(actor, { planId: plan.id, rowsPerSecond: 1_000, reason: "protect production" });
    // Let the copiers pick the new rate up (they re-read it every second) and copy at it for a while.
    await new Promise((r) => setTimeout(r, 3_000));
    const before = await copied(plan.id);
    console.log(`throttled: ${before} rows copied`);

    await controlDataMovement(actor, { planId: plan.id, action: "pause", reason: "peak traffic" });
    const pausedAt = performance.now();
    await waitFor(
      "every copier to stop",
      async () => (await getMovementStatus(plan.id, 1)).movement?.copiersActive === 0,
      5_000,
    );
    const tookMs = performance.now() - pausedAt;
    const atPause = await copied(plan.id);
    await new Promise((r) => setTimeout(r, 2_000));
    expect(await copied(plan.id)).toBe(atPause);
    const status = await getMovementStatus(plan.id, 1);
    expect(status.totals.tablesDone).toBeLessThan(status.totals.tables);
    console.log(`pause held after ${Math.round(tookMs)} ms; ${atPause - before} rows copied while pausing`);
    await controlDataMovement(actor, { planId: plan.id, action: "cancel", reason: "next test" });
    await waitFor("the cancel to finish", async () => {
      const m = await db().dataMovement.findUnique({ where: { planId: plan.id } });
      return m?.status === "cancelled";
    });
  });

  it("holds within a few seconds when back-off has slowed the copy to a few rows/s", {
    timeout: 180_000,
  }, async () => {
    const shardDbs = await db().database.findMany({ where: { kind: "shard" }, orderBy: { name: "asc" } });
    const source = await db().database.findFirstOrThrow({ where: { kind: "legacy" } });
    let plan = await createPlan(actor, {
      name: "pause at a crawl",
      sourceDatabaseId: source.id,
      shardDatabaseIds: shardDbs.map((d) => d.id),
      shardKeyColumn: "tenant_id",
      // 100 rows/s, and legacy always "busy" (the load query says 1, over 0): back-off holds each
      // copier at a tenth of its share, so every chunk waits seconds for the rate limit.
      settings: {
        ...DEFAULT_PLAN_SETTINGS,
        backfillRowsPerSecond: 100,
        sourceLoadQuery: "select 1",
        sourceLoadThreshold: 0,
      },
    });
    for (const reason of ["key", "router"]) {
      plan = await transitionPlan(actor, {
        planId: plan.id,
        expectedVersion: plan.version,
        event: "advance",
        reason,
      });
    }
    await startDataMovement(actor, { planId: plan.id, reason: "go", resetShards: true });
    await waitFor("a few slow chunks", async () => (await copied(plan.id)) >= 150, 120_000);
    // Pause just after a chunk landed: its copier has just begun its next wait for the rate limit.
    const last = await copied(plan.id);
    await waitFor(
      "the next chunk to land",
      async () => {
        await new Promise((r) => setTimeout(r, 50));
        return (await copied(plan.id)) !== last;
      },
      60_000,
    );
    await controlDataMovement(actor, { planId: plan.id, action: "pause", reason: "peak traffic" });
    const pausedAt = performance.now();
    await waitFor(
      "every copier to stop",
      async () => (await getMovementStatus(plan.id, 1)).movement?.copiersActive === 0,
      2_500,
    );
    console.log(`pause at a crawl held after ${Math.round(performance.now() - pausedAt)} ms`);
  });
});
