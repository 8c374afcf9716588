// A cutover survives the death of the worker driving it, at every step (docs/cutover.md, "Crashes"):
// a worker process is SIGKILLed while it holds one attempt at each of prechecking, fencing,
// draining and flipped (SHARDSHIFT_CUTOVER_PAUSE_AT holds each tenant's attempt at its step; the
// test waits for the worker to say so, then kills it), and a new worker takes every attempt over.
// (All steps in one kill: a worker process takes ~20 s to start on a loaded 2-core machine.) Before the commit point the tenant
// ends on legacy (aborted), from it on the shard (done); never frozen, never half way. Under SDK
// writes throughout: every acknowledged write is on both sides at the end, rows equal everywhere.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRouter, httpMapSource, type Router } from "../../../sdk";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { systemActor } from "../../services/actor";
import { startDataMovement } from "../../services/movement/movement";
import { createApiToken } from "../../services/routing/api-tokens";
import { requestCutover } from "../../services/routing/cutover";
import { closeRoutingMapNotifier } from "../../services/routing/map-notifier";
import { compareShards } from "../../testing/compare-shards";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { ledgerMismatches, startLedgerWorkload } from "../../testing/ledger-workload";
import { waitForBackfill, waitForCatchUp } from "../../testing/movement-fixture";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { startRoutingHttp } from "../../testing/routing-http";
import { spawnWorker, type WorkerProcess, waitFor } from "../../testing/worker-process";
import type { SourceSchema } from "../analysis/introspect";
import { reverseSlotName } from "../cdc/reverse-slot";
import { parseLsn, readSlotStatus } from "../cdc/slot";
import { hashPlacement } from "../router/placement";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
let http: Awaited<ReturnType<typeof startRoutingHttp>>;
let router: Router | null = null;
const workers: WorkerProcess[] = [];
const actor = systemActor("cutover-crash-test", "engineer@test");

beforeAll(async () => {
  control = await useControlPlane("cc_control");
  legacy = await createTestDatabase("cc_legacy");
  shards = [await createTestDatabase("cc_shard0"), await createTestDatabase("cc_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: 24, rows: 6_000, seed: 9 });
  http = await startRoutingHttp();
}, 120_000);

afterAll(async () => {
  for (const w of workers) await w.kill();
  await router?.close();
  await http?.close();
  await closeRoutingMapNotifier();
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

/**
 * A worker process whose cutovers of the given tenants wait at the given statuses (the test hook);
 * an attempt it takes over from a dead worker is recovered, never held.
 */
async function startWorkerProcess(pauseAt: string, lines: string[]): Promise<WorkerProcess> {
  process.env.SHARDSHIFT_CUTOVER_PAUSE_AT = pauseAt;
  // Two of the held attempts (fencing, draining) are held inside the freeze gate; the one held at
  // flipped must pass it too. With the default two slots it waited for ever when its pre-check
  // ended last (the test failed now and then: "Timed out ... waiting for the worker to hold every
  // attempt at its step", the flipped one only "claimed").
  process.env.SHARDSHIFT_CUTOVER_FREEZES_AT_ONCE = String(STEPS.length);
  const worker = spawnWorker({ onLine: (line) => lines.push(line) });
  delete process.env.SHARDSHIFT_CUTOVER_PAUSE_AT;
  delete process.env.SHARDSHIFT_CUTOVER_FREEZES_AT_ONCE;
  workers.push(worker);
  await worker.ready;
  return worker;
}

const note = (m: string) => console.log(`${new Date().toISOString()} ${m}`);

/** A lag sample written after `since`: this worker's forward stream is running. */
async function forwardStreaming(planId: string, since: Date) {
  await waitFor(
    "the forward stream to run in the new worker",
    () => db().metricSample.findFirst({ where: { planId, name: "cdc.lag_ms", at: { gt: since } } }),
    60_000,
  );
}

const STEPS = [
  { status: "prechecking", tenant: "2", expect: "aborted" },
  { status: "fencing", tenant: "4", expect: "aborted" },
  { status: "draining", tenant: "6", expect: "aborted" },
  { status: "flipped", tenant: "7", expect: "done" },
] as const;

describe("cutover crash recovery", () => {
  it("a worker killed holding attempts at each step: before the flip the tenant stays on legacy, from it on the shard", {
    timeout: 900_000,
  }, async () => {
    const plan = await planAtTwoWayCdc(
      actor,
      "cutover crash",
      legacy.url,
      shards.map((s) => s.url),
    );
    const pauseAt = STEPS.map((s) => `${s.status}:${s.tenant}`).join(",");
    await startDataMovement(actor, { planId: plan.id, reason: "go", resetShards: true });
    const lines: string[] = [];
    const first = await startWorkerProcess(pauseAt, lines);
    note(`worker ${first.pid} running`);
    await waitForBackfill(plan.id, 300_000);
    const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } });
    const schema = movement.sourceSchema as unknown as SourceSchema;
    const placement = hashPlacement(shards.length);

    const token = (await createApiToken(actor, { planId: plan.id, name: "crash test app" })).token;
    router = await createRouter({
      databases: {
        legacy: legacy.pool,
        "shard-0": shards[0]?.pool as pg.Pool,
        "shard-1": shards[1]?.pool as pg.Pool,
      },
      map: httpMapSource({ url: http.url, token, waitSeconds: 20 }),
    });
    const workload = startLedgerWorkload(router, {
      tenants: [...STEPS.map((s) => s.tenant), "9", "10"],
      lanes: 3,
      writesPerSecond: 120,
    });
    try {
      await forwardStreaming(plan.id, new Date(0));
      // One attempt per step, each held at its step by the first worker (its own tenant)…
      const attempts: ((typeof STEPS)[number] & { cutoverId: string })[] = [];
      for (const step of STEPS) {
        const { cutoverId } = await requestCutover(actor, {
          planId: plan.id,
          tenantKey: step.tenant,
          reason: `crash at ${step.status}`,
          budgetMs: 5_000,
        });
        attempts.push({ ...step, cutoverId });
      }
      await waitFor(
        "the worker to hold every attempt at its step",
        async () =>
          attempts.every((a) =>
            lines.some((l) => l.includes(a.cutoverId.slice(0, 8)) && l.includes(`paused at ${a.status}`)),
          ),
        180_000,
      ).catch((error: Error) => {
        throw new Error(
          `${error.message}; the worker said:\n${lines.filter((l) => l.includes("[cutover")).join("\n")}`,
        );
      });
      for (const a of attempts) {
        const row = await db().tenantCutover.findUniqueOrThrow({ where: { id: a.cutoverId } });
        expect(row.status).toBe(a.status);
      }
      // …then killed, all at once.
      await first.kill("SIGKILL");
      note(`killed worker ${first.pid}`);

      // A new worker finds the attempts' locks free and does what each status says.
      const second = await startWorkerProcess(pauseAt, []);
      note(`worker ${second.pid} running`);
      for (const a of attempts) {
        const ended = await waitFor(
          `the attempt stopped at ${a.status} to end`,
          async () => {
            const row = await db().tenantCutover.findUniqueOrThrow({ where: { id: a.cutoverId } });
            return row.status === "done" || row.status === "aborted" ? row : null;
          },
          180_000,
        );
        note(`${a.status}: attempt ended ${ended.status} ${ended.error ?? ""}`);
        expect(ended.status).toBe(a.expect);
        const route = await db().tenantRoute.findUnique({
          where: { planId_tenantKey: { planId: plan.id, tenantKey: a.tenant } },
        });
        const shardId = (
          await db().planShard.findFirstOrThrow({
            where: { planId: plan.id, ordinal: placement.shardFor(a.tenant) },
          })
        ).databaseId;
        expect(route?.ownerDatabaseId ?? null).toBe(a.expect === "done" ? shardId : null);
        expect(route?.frozen ?? false).toBe(false);
      }
      // Writes go on for every tenant wherever it ended.
      const acknowledged = workload.stats().acknowledged;
      await waitFor(
        "writes after the recovery",
        async () => workload.stats().acknowledged > acknowledged + 100,
      );
    } finally {
      await workload.stop();
    }
    const stats = workload.stats();
    expect(stats.unexpected).toEqual([]);

    await waitForCatchUp(legacy.pool, movement.slotName);
    const flippedTo = placement.shardFor("7");
    const shard = shards[flippedTo]?.pool as pg.Pool;
    const { rows } = await shard.query<{ lsn: string }>("select pg_current_wal_insert_lsn()::text as lsn");
    const head = parseLsn(rows[0]?.lsn ?? "0/0");
    await waitFor(
      "reverse CDC to catch up",
      async () =>
        ((await readSlotStatus(shard, reverseSlotName(plan.id, flippedTo)))?.confirmedFlushLsn ?? 0n) >= head,
    );
    const entries = workload.entries();
    expect(await ledgerMismatches(legacy.pool, entries, "legacy")).toEqual([]);
    for (const [ordinal, s] of shards.entries()) {
      const mine = entries.filter((e) => placement.shardFor(e.tenant) === ordinal);
      expect(await ledgerMismatches(s.pool, mine, `shard-${ordinal}`)).toEqual([]);
    }
    expect(
      await compareShards(
        legacy.pool,
        shards.map((s) => s.pool),
        schema,
        placement,
      ),
    ).toEqual([]);
    console.log(
      `cutover-crash: ${stats.acknowledged} writes acknowledged, retries ${JSON.stringify(stats.retries)}`,
    );
  });
});
