// The engine's contract (invariants 2 and 4): under a heavy concurrent write workload, with
// worker processes (backfill copiers and the CDC consumer) killed by SIGKILL mid-way and
// restarted, every row of every table ends identical on legacy and the shards — nothing missing,
// nothing extra, nothing stale — and cancelling drops the replication slot.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../db";
import { systemActor } from "../services/actor";
import {
  controlDataMovement,
  getMovementStatus,
  setBackfillRate,
  startDataMovement,
} from "../services/movement/movement";
import { compareShards } from "../testing/compare-shards";
import { useControlPlane } from "../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../testing/databases";
import { planAtTwoWayCdc } from "../testing/plan-fixture";
import { spawnWorker, type WorkerProcess, waitFor } from "../testing/worker-process";
import type { SourceSchema } from "./analysis/introspect";
import { currentWalLsn, parseLsn, readSlotStatus } from "./cdc/slot";
import { loadDemoDataset } from "./demo/dataset";
import { startWriteWorkload } from "./demo/workload";
import { hashPlacement } from "./router/placement";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
const workers: WorkerProcess[] = [];
const actor = systemActor("movement-test", "engineer@test");

beforeAll(async () => {
  control = await useControlPlane("mv_control");
  legacy = await createTestDatabase("mv_legacy");
  shards = [
    await createTestDatabase("mv_shard0"),
    await createTestDatabase("mv_shard1"),
    await createTestDatabase("mv_shard2"),
  ];
  await loadDemoDataset(legacy.pool, { tenants: 400, rows: 60_000, seed: 11 });
});

afterAll(async () => {
  for (const w of workers) await w.kill();
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

async function tasksProgress(planId: string) {
  const status = await getMovementStatus(planId, 1);
  return status.totals;
}

describe("backfill + forward CDC under writes and crashes", () => {
  it("ends with an exact copy on the shards, through SIGKILLed workers", { timeout: 300_000 }, async () => {
    const plan = await planAtTwoWayCdc(
      actor,
      "crash test",
      legacy.url,
      shards.map((s) => s.url),
    );
    expect(plan.phase).toBe("two_way_cdc");

    const workload = startWriteWorkload(legacy.pool, { writesPerSecond: 600, seed: 3 });
    try {
      await waitFor("the workload to start writing", async () => workload.stats().inserts > 50);
      await startDataMovement(actor, { planId: plan.id, reason: "go" });
      await setBackfillRate(actor, { planId: plan.id, rowsPerSecond: 4_000 });
      workers.push(spawnWorker(), spawnWorker());

      // Kill both workers (every copier and the CDC consumer) once the backfill is well under way.
      await waitFor(
        "a third of the rows copied",
        async () => {
          const t = await tasksProgress(plan.id);
          return t.rowsCopied > t.rowsTotal / 3;
        },
        120_000,
      );
      await waitFor(
        "CDC to have applied something",
        async () => (await db().dataMovement.findUnique({ where: { planId: plan.id } }))?.confirmedLsn,
      );
      for (const w of workers.splice(0)) await w.kill("SIGKILL");
      const afterKill = await tasksProgress(plan.id);
      expect(afterKill.tablesDone).toBeLessThan(afterKill.tables);

      workers.push(spawnWorker(), spawnWorker());
      await setBackfillRate(actor, { planId: plan.id, rowsPerSecond: 50_000 });
      await waitFor(
        "every table copied",
        async () => {
          const t = await tasksProgress(plan.id);
          return t.tablesDone === t.tables;
        },
        180_000,
      );
    } finally {
      await workload.stop();
    }
    expect(workload.stats().errors).toBe(0);

    // Caught up: the slot has confirmed everything legacy wrote.
    const head = await currentWalLsn(legacy.pool);
    const status = await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } });
    await waitFor(
      "CDC to catch up with legacy",
      async () => {
        const slot = await readSlotStatus(legacy.pool, status.slotName);
        return slot?.confirmedFlushLsn !== null && slot !== null && (slot.confirmedFlushLsn ?? 0n) >= head;
      },
      60_000,
    );

    const schema = status.sourceSchema as unknown as SourceSchema;
    const differences = await compareShards(
      legacy.pool,
      shards.map((s) => s.pool),
      schema,
      hashPlacement(shards.length),
    );
    expect(differences).toEqual([]);
    const totalRows = async (p: pg.Pool) =>
      (await p.query("select count(*)::int n from events")).rows[0].n as number;
    expect((await Promise.all(shards.map((s) => totalRows(s.pool)))).reduce((a, b) => a + b, 0)).toBe(
      await totalRows(legacy.pool),
    );

    // Cancelling drops the slot and the publication on legacy.
    await controlDataMovement(actor, { planId: plan.id, action: "cancel", reason: "test over" });
    await waitFor(
      "the movement to be cancelled",
      async () =>
        (await db().dataMovement.findUnique({ where: { planId: plan.id } }))?.status === "cancelled",
      30_000,
    );
    expect(await readSlotStatus(legacy.pool, status.slotName)).toBeNull();
    const pubs = await legacy.pool.query("select 1 from pg_publication where pubname = $1", [
      status.publicationName,
    ]);
    expect(pubs.rowCount).toBe(0);
    expect(parseLsn(status.slotLsn ?? "0/0")).toBeGreaterThan(0n);
  });
});
