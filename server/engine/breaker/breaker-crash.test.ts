// A rollback survives the death of the worker driving it (docs/breaker.md, "Crashes"). One trip for
// every tenant on the shards, three worker processes, under SDK writes throughout:
//   1. the first worker holds the rollback at "fenced" (the set frozen on the map and fenced on both
//      shards, nothing flipped) and is SIGKILLed;
//   2. the second takes the trip over: before the flip, so it lifts the fences (the tenants stay on
//      their shards, the trip back to `tripped` with the reason), then drives it again and is held
//      at "flipped" (the commit point passed) — and SIGKILLed;
//   3. the third finishes it: every tenant on legacy, in the one map version of the flip.
// Each tenant is always wholly on one side; every acknowledged write is on legacy and on its
// shard at the end; rows equal everywhere.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRouter, httpMapSource, type Router } from "../../../sdk";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { systemActor } from "../../services/actor";
import { tripBreaker } from "../../services/breaker/breaker";
import { startDataMovement } from "../../services/movement/movement";
import { createApiToken } from "../../services/routing/api-tokens";
import { requestCutover } from "../../services/routing/cutover";
import { closeRoutingMapNotifier } from "../../services/routing/map-notifier";
import { compareShards } from "../../testing/compare-shards";
import { useControlPlane } from "../../testing/control-plane";
import { waitForCutoverEnd } from "../../testing/cutover-fixture";
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

const CUT = ["1", "2", "3", "4", "5", "6"];

/** The plan's freeze budget for the trip (SHARDSHIFT_BREAKER_BUDGET_MS). 10 s, the settings' most: this test proves what a rollback keeps, not how fast it is (that is `npm run bench`'s), and under CI's load reverse replication could miss the 2 s default and the trip give up. */
const BUDGET_MS = Number(process.env.SHARDSHIFT_BREAKER_BUDGET_MS ?? 10_000);

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
let http: Awaited<ReturnType<typeof startRoutingHttp>>;
let router: Router | null = null;
const workers: WorkerProcess[] = [];
const actor = { ...systemActor("breaker-crash-test", "operator@test"), role: "operator" as const };

beforeAll(async () => {
  control = await useControlPlane("bc_control");
  legacy = await createTestDatabase("bc_legacy");
  shards = [await createTestDatabase("bc_shard0"), await createTestDatabase("bc_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: 16, rows: 4_000, seed: 5 });
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

async function startWorkerProcess(pauseAt: string | null, lines: string[]): Promise<WorkerProcess> {
  if (pauseAt) process.env.SHARDSHIFT_BREAKER_PAUSE_AT = pauseAt;
  const worker = spawnWorker({ onLine: (line) => lines.push(line) });
  delete process.env.SHARDSHIFT_BREAKER_PAUSE_AT;
  workers.push(worker);
  await worker.ready;
  return worker;
}

const note = (m: string) => console.log(`${new Date().toISOString()} ${m}`);

async function ownersOf(planId: string) {
  const routes = await db().tenantRoute.findMany({ where: { planId, tenantKey: { in: CUT } } });
  return new Map(routes.map((r) => [r.tenantKey, { owner: r.ownerDatabaseId, frozen: r.frozen }]));
}

describe("breaker crash recovery", () => {
  it("killed before the flip: undone and driven again; killed after it: finished", {
    timeout: 1_200_000,
  }, async () => {
    const plan = await planAtTwoWayCdc(
      actor,
      "breaker crash",
      legacy.url,
      shards.map((s) => s.url),
    );
    // The trip's freeze budget: the plan's setting (2 s by default) unless the load calls for more.
    await db().plan.update({
      where: { id: plan.id },
      data: { settings: { ...(plan.settings as object), freezeBudgetMs: BUDGET_MS } },
    });
    await startDataMovement(actor, { planId: plan.id, reason: "go", resetShards: true });
    const lines: string[] = [];
    const first = await startWorkerProcess("fenced", lines);
    note(`worker ${first.pid} running (holds rollbacks at fenced)`);
    await waitForBackfill(plan.id, 300_000);
    const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } });
    const schema = movement.sourceSchema as unknown as SourceSchema;
    const placement = hashPlacement(shards.length);
    const shardIds = (
      await db().planShard.findMany({ where: { planId: plan.id }, orderBy: { ordinal: "asc" } })
    ).map((s) => s.databaseId);
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
      tenants: [...CUT, "9", "10"],
      lanes: 3,
      writesPerSecond: 120,
    });
    let tripId = "";
    try {
      await waitFor("forward replication to report its lag", () =>
        db().metricSample.findFirst({ where: { planId: plan.id, name: "cdc.lag_ms" } }),
      );
      for (const tenant of CUT) {
        for (let attempt = 1; ; attempt++) {
          const { cutoverId } = await requestCutover(actor, {
            planId: plan.id,
            tenantKey: tenant,
            reason: "setup",
            budgetMs: 10_000,
          });
          if ((await waitForCutoverEnd(cutoverId, 180_000)).status === "done") break;
          if (attempt >= 4) throw new Error(`tenant ${tenant} did not cut over`);
        }
      }
      await waitFor(
        "reverse replication to report its lag",
        () => db().metricSample.findFirst({ where: { planId: plan.id, name: "cdc.reverse_lag_ms" } }),
        60_000,
      );

      // 1. Held at "fenced" by the first worker, then killed.
      tripId = (await tripBreaker(actor, { planId: plan.id, scope: { kind: "all" }, reason: "crash test" }))
        .tripId;
      await waitFor(
        "the first worker to hold the rollback at fenced",
        async () => lines.some((l) => l.includes(tripId.slice(0, 8)) && l.includes("paused at fenced")),
        180_000,
      );
      const held = await db().breakerTrip.findUniqueOrThrow({ where: { id: tripId } });
      expect(held.status).toBe("rolling_back");
      expect(held.flipVersion).toBeNull();
      for (const [tenant, route] of await ownersOf(plan.id)) {
        expect(route.frozen, tenant).toBe(true);
        expect(route.owner, tenant).toBe(shardIds[placement.shardFor(tenant)]);
      }
      await first.kill("SIGKILL");
      note(`killed worker ${first.pid} at fenced`);

      // 2. The second undoes it (the tenants stay on their shards), drives it again, is held at flipped.
      const secondLines: string[] = [];
      const second = await startWorkerProcess("flipped", secondLines);
      note(`worker ${second.pid} running (holds rollbacks at flipped)`);
      await waitFor(
        "the second worker to hold the rollback at flipped",
        async () =>
          secondLines.some((l) => l.includes(tripId.slice(0, 8)) && l.includes("paused at flipped")),
        180_000,
      ).catch((error: Error) => {
        throw new Error(
          `${error.message}; it said:\n${secondLines.filter((l) => l.includes("[breaker")).join("\n")}`,
        );
      });
      const flipped = await db().breakerTrip.findUniqueOrThrow({ where: { id: tripId } });
      const steps = (flipped.steps as { status: string; note?: string }[]).map((s) => s.status);
      note(`steps after the second worker's flip: ${steps.join(" → ")}`);
      // Undone before it was driven again: back to tripped, with the reason.
      expect(steps.slice(0, steps.indexOf("tripped", 1) + 1)).toEqual([
        "tripped",
        "rolling_back",
        "frozen",
        "fenced",
        "tripped",
      ]);
      expect(flipped.attempts).toBe(2);
      expect(flipped.flipVersion).not.toBeNull();
      expect(await db().auditEvent.count({ where: { action: "breaker.rollback.interrupted" } })).toBe(1);
      for (const [tenant, route] of await ownersOf(plan.id)) {
        expect(route.owner, tenant).toBeNull();
        expect(route.frozen, tenant).toBe(true);
      }
      await second.kill("SIGKILL");
      note(`killed worker ${second.pid} at flipped`);

      // 3. The third finishes it.
      const third = await startWorkerProcess(null, []);
      note(`worker ${third.pid} running`);
      const ended = await waitFor(
        "the rollback to end",
        async () => {
          const r = await db().breakerTrip.findUniqueOrThrow({ where: { id: tripId } });
          return r.status === "rolled_back" || r.status === "failed" ? r : null;
        },
        180_000,
      );
      expect(ended.status).toBe("rolled_back");
      expect(ended.flipVersion).toBe(flipped.flipVersion);
      for (const [tenant, route] of await ownersOf(plan.id)) {
        expect(route.owner, tenant).toBeNull();
        expect(route.frozen, tenant).toBe(false);
      }
      const flips = await db().routingChange.findMany({
        where: { planId: plan.id, toOwnerId: null, fromOwnerId: { not: null } },
      });
      expect(flips.map((f) => f.tenantKey).sort()).toEqual([...CUT].sort());
      expect(new Set(flips.map((f) => f.version))).toEqual(new Set([ended.flipVersion]));
      const acknowledged = workload.stats().acknowledged;
      await waitFor(
        "writes after the recovery",
        async () => workload.stats().acknowledged > acknowledged + 100,
      );
    } finally {
      await workload.stop();
    }
    expect(workload.stats().unexpected).toEqual([]);

    for (const [ordinal, shard] of shards.entries()) {
      const { rows } = await shard.pool.query<{ lsn: string }>(
        "select pg_current_wal_insert_lsn()::text as lsn",
      );
      const head = parseLsn(rows[0]?.lsn ?? "0/0");
      await waitFor(
        `reverse CDC of shard ${ordinal} to catch up`,
        async () =>
          ((await readSlotStatus(shard.pool, reverseSlotName(plan.id, ordinal)))?.confirmedFlushLsn ?? 0n) >=
          head,
        120_000,
      );
    }
    await waitForCatchUp(legacy.pool, movement.slotName, 120_000);
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
  });
});
