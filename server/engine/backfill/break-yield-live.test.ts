// Adversarial (brk22): the 3 ms yield (shared/replication-pressure.ts) on a real movement, while
// the movement's own CDC replicates about 1,000 writes/s and, beside it on the same worker, a
// replication loop whose every batch runs 300 ms late for as long as the test lasts (a stream whose
// lateness stays between the limit and the ceiling for ever: every chunk of background work pauses
// its longest and its pace sits at the floor). The yield must change only when chunks run, never
// what they copy or verify, and it must not starve them: the backfill finishes (at its floor, a
// tenth of its rate), every pause is within MAX_PAUSE_MS, and the parity pass beside the writes
// verifies every row and reports no difference.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { startWriteWorkload, type WriteWorkload } from "../../demo/workload";
import { systemActor } from "../../services/actor";
import { startDataMovement } from "../../services/movement/movement";
import { compareShards } from "../../testing/compare-shards";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitForBackfill, waitForCatchUp } from "../../testing/movement-fixture";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { type PressureLoop, startPressureLoop } from "../../testing/pressure-loop";
import { startWorker, type Worker } from "../../worker";
import { introspectSource } from "../analysis/introspect";
import type { Statement } from "../cdc/apply";
import type { ChangeRouter } from "../cdc/change-router";
import type { SourceTransaction } from "../cdc/stream-reader";
import { runParityCheck } from "../parity/run-check";
import { hashPlacement } from "../router/placement";
import { MAX_PAUSE_MS, replicationLatenessMs, yieldTotals } from "../shared/replication-pressure";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
let lateTarget: TestDatabase;
let worker: Worker | undefined;
let workload: WriteWorkload | undefined;
let late: PressureLoop | undefined;
let feeder: NodeJS.Timeout | undefined;
const actor = systemActor("break-yield-live", "engineer@test");
const ROWS = 60_000;

beforeAll(async () => {
  control = await useControlPlane("byl_control");
  legacy = await createTestDatabase("byl_legacy");
  shards = [await createTestDatabase("byl_shard0"), await createTestDatabase("byl_shard1")];
  lateTarget = await createTestDatabase("byl_late");
  await lateTarget.pool.query("create table items (id bigint primary key)");
  await loadDemoDataset(legacy.pool, { tenants: 300, rows: ROWS, seed: 22 });
  worker = await startWorker(control.url, { log: () => {} });
}, 180_000);

afterAll(async () => {
  if (feeder) clearInterval(feeder);
  await workload?.stop();
  await late?.close();
  await worker?.stop();
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
  await lateTarget?.drop();
});

/** A loop beside the movement's whose every batch, after its first second, committed 300 ms before it is read. */
async function startLateStream(): Promise<PressureLoop> {
  const router = {
    route(transactions: SourceTransaction[], appliedUpTo: bigint[]) {
      const out: Statement[] = transactions
        .filter((t) => t.endLsn > (appliedUpTo[0] ?? 0n))
        .map((t) => ({
          name: "byl_ins",
          text: "insert into items (id) values ($1::bigint) on conflict do nothing",
          values: [t.xid],
        }));
      return [out];
    },
  } as unknown as ChangeRouter;
  const loop = await startPressureLoop({ url: lateTarget.url, origin: "shardshift_byl_late", router });
  let n = 0;
  const next = (lateMs: number) => {
    n++;
    const endLsn = BigInt(n * 16);
    loop.feed({
      transactions: [
        {
          xid: String(n),
          commitLsn: endLsn - 1n,
          endLsn,
          commitTimeIso: new Date(Date.now() - lateMs).toISOString(),
          changes: [],
          continued: false,
        },
      ],
      confirmableLsn: endLsn,
    });
  };
  // The least delay of the minute first, for a second: a first batch slowed by a cold target
  // (seen once: it took over 300 ms) would otherwise set the base, and nothing read as late.
  const from = Date.now();
  feeder = setInterval(() => next(Date.now() - from < 1_000 ? 1 : 300), 20);
  return loop;
}

describe("the yield on a live movement, beside a stream late for ever", () => {
  it("copies and verifies every row exactly, finishes the backfill, and pauses each chunk at most its bound", {
    timeout: 400_000,
  }, async () => {
    late = await startLateStream();
    const deadline = Date.now() + 10_000;
    while (replicationLatenessMs() < 200) {
      if (Date.now() > deadline) {
        const failure = await Promise.race([
          late.running.then(
            () => "ended",
            (e) => String(e),
          ),
          new Promise((r) => setTimeout(() => r("running"), 100)),
        ]);
        const n = (await lateTarget.pool.query("select count(*)::int as n from items")).rows[0].n;
        throw new Error(
          `the late stream never read as late (${failure}; ${n} rows; lateness ${replicationLatenessMs()})`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    const plan = await planAtTwoWayCdc(
      actor,
      "byl",
      legacy.url,
      shards.map((s) => s.url),
    );
    workload = startWriteWorkload(legacy.pool, { writesPerSecond: 1_000, seed: 23 });
    const before = yieldTotals();
    const started = performance.now();
    await startDataMovement(actor, { planId: plan.id, reason: "go" });
    await waitForBackfill(plan.id, 240_000);
    const backfillS = (performance.now() - started) / 1000;
    const during = yieldTotals();
    const pauses = during.pauses - before.pauses;
    const pausedMs = during.pausedMs - before.pausedMs;
    console.log(
      `backfill ${backfillS.toFixed(1)} s; ${pauses} pauses, ${(pausedMs / 1000).toFixed(1)} s paused, ${(pausedMs / Math.max(1, pauses)).toFixed(0)} ms each; workload ${workload.stats().writesPerSecondObserved.toFixed(0)} writes/s`,
    );
    expect(pauses).toBeGreaterThan(0);
    // Each pause ends at the bound (plus a poll and a loaded machine's timer slack).
    expect(pausedMs / pauses).toBeLessThanOrEqual(MAX_PAUSE_MS + 50);

    // Parity while the writes go on: every row verified, nothing reported.
    const parityStarted = performance.now();
    const result = await runParityCheck(plan.id, "full");
    console.log(`parity ${((performance.now() - parityStarted) / 1000).toFixed(1)} s`);
    expect(result.unverified).toEqual([]);
    expect(result.confirmed).toBe(0);
    expect(result.rowsVerified).toBe(result.rowsTotal);

    // Writes stop; once CDC caught up, every shard holds exactly legacy's rows.
    await workload.stop();
    workload = undefined;
    const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } });
    await waitForCatchUp(legacy.pool, movement.slotName, 120_000);
    const client = await legacy.pool.connect();
    const schema = await introspectSource(client, "tenant_id").finally(() => client.release());
    const differences = await compareShards(
      legacy.pool,
      shards.map((s) => s.pool),
      schema,
      hashPlacement(shards.length),
    );
    expect(differences).toEqual([]);
  });
});
