// One tenant cut over to its shard and back, by a worker, under a live write workload through the
// router SDK (issue 12): every acknowledged write is found afterwards — on the owner and, through
// replication in both directions, on the other side — every row of every table is equal on legacy
// and the shards, a direct write to legacy for the cut-over tenant is refused by the fence and shows
// as a stray write, and the only errors the application saw are the SDK's typed retryable ones.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRouter, httpMapSource, type Router } from "../../../sdk";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { systemActor } from "../../services/actor";
import { startDataMovement } from "../../services/movement/movement";
import { createApiToken } from "../../services/routing/api-tokens";
import { listCutovers, previewCutover, requestCutover } from "../../services/routing/cutover";
import { closeRoutingMapNotifier } from "../../services/routing/map-notifier";
import { compareShards } from "../../testing/compare-shards";
import { useControlPlane } from "../../testing/control-plane";
import { waitForCutoverEnd } from "../../testing/cutover-fixture";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { ledgerMismatches, startLedgerWorkload } from "../../testing/ledger-workload";
import { waitForBackfill, waitForCatchUp } from "../../testing/movement-fixture";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { startRoutingHttp } from "../../testing/routing-http";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";
import type { SourceSchema } from "../analysis/introspect";
import { reverseSlotName } from "../cdc/reverse-slot";
import { parseLsn, readSlotStatus } from "../cdc/slot";
import { hashPlacement } from "../router/placement";
import { FENCE_SQLSTATE } from "../routing/fence";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
let http: Awaited<ReturnType<typeof startRoutingHttp>>;
let worker: Worker | null = null;
let router: Router | null = null;
const actor = systemActor("cutover-test", "engineer@test");
/**
 * The plan's default is 2 s; on the shared 2-core test machine (load 20–35) the fence step alone
 * took 1–4 s, so the test asks for more to prove the protocol rather than the machine.
 */
const BUDGET_MS = Number(process.env.SHARDSHIFT_CUTOVER_TEST_BUDGET_MS ?? 5_000);

beforeAll(async () => {
  control = await useControlPlane("co_control");
  legacy = await createTestDatabase("co_legacy");
  shards = [await createTestDatabase("co_shard0"), await createTestDatabase("co_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: 24, rows: 6_000, seed: 5 });
  http = await startRoutingHttp();
}, 120_000);

afterAll(async () => {
  await router?.close();
  await worker?.stop();
  await http?.close();
  await closeRoutingMapNotifier();
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

const cutoverEnded = (id: string) => waitForCutoverEnd(id, 45_000);

/** The shard's reverse slot confirmed everything the shard had written when this was called. */
async function waitForReverseCatchUp(shard: pg.Pool, slot: string) {
  const { rows } = await shard.query<{ lsn: string }>("select pg_current_wal_insert_lsn()::text as lsn");
  const head = parseLsn(rows[0]?.lsn ?? "0/0");
  await waitFor(
    "reverse CDC to catch up with the shard",
    async () => ((await readSlotStatus(shard, slot))?.confirmedFlushLsn ?? 0n) >= head,
    60_000,
  );
}

describe("cutover runner", () => {
  it("moves a tenant to its shard and back under SDK writes, losing nothing", {
    timeout: 240_000,
  }, async () => {
    const plan = await planAtTwoWayCdc(
      actor,
      "cutover",
      legacy.url,
      shards.map((s) => s.url),
    );
    await startDataMovement(actor, { planId: plan.id, reason: "go", resetShards: true });
    worker = await startWorker(control.url, {
      log: (m) => {
        if (process.env.CUTOVER_TEST_LOG && m.startsWith("[cutover"))
          console.log(`${new Date().toISOString()} ${m}`);
      },
    });
    await waitForBackfill(plan.id, 90_000);
    const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } });
    const schema = movement.sourceSchema as unknown as SourceSchema;
    const placement = hashPlacement(shards.length);

    const tenant = "3";
    const shardOrdinal = placement.shardFor(tenant);
    const shard = shards[shardOrdinal] as TestDatabase;
    const token = (await createApiToken(actor, { planId: plan.id, name: "cutover test app" })).token;
    router = await createRouter({
      databases: {
        legacy: legacy.pool,
        "shard-0": shards[0]?.pool as pg.Pool,
        "shard-1": shards[1]?.pool as pg.Pool,
      },
      map: httpMapSource({ url: http.url, token, waitSeconds: 20 }),
    });
    const workload = startLedgerWorkload(router, {
      tenants: [tenant, tenant, tenant, "5", "8", "13"],
      lanes: 4,
      writesPerSecond: 200,
    });
    try {
      await waitFor("forward replication to report its lag", async () => {
        const preview = await previewCutover({ planId: plan.id, tenantKey: tenant });
        return preview.forwardLagMs !== null && preview.blockers.length === 0 ? preview : null;
      });
      const preview = await previewCutover({ planId: plan.id, tenantKey: tenant });
      expect(preview).toMatchObject({
        direction: "to-shard",
        from: { name: "legacy" },
        to: { name: `shard-${shardOrdinal}` },
      });

      // To the shard.
      const there = await requestCutover(actor, {
        planId: plan.id,
        tenantKey: tenant,
        reason: "move it",
        budgetMs: BUDGET_MS,
      });
      const done = await cutoverEnded(there.cutoverId);
      expect(done.error).toBeNull();
      expect(done.status).toBe("done");
      // The shard's reverse stream (its slot made by this first cutover) was reading before the
      // freeze began: its start-up is not paid inside the freeze.
      const { rows: readers } = await shard.pool.query<{ since: Date }>(
        `select r.backend_start as since from pg_replication_slots s
         join pg_stat_replication r on r.pid = s.active_pid where s.slot_name = $1`,
        [reverseSlotName(plan.id, shardOrdinal)],
      );
      const frozeAt = (await db().tenantCutover.findUniqueOrThrow({ where: { id: there.cutoverId } }))
        .freezeStartedAt;
      expect(readers[0]?.since.getTime()).toBeLessThan(frozeAt?.getTime() ?? 0);
      await expect(
        requestCutover(actor, { planId: plan.id, tenantKey: tenant, reason: "again", direction: "to-shard" }),
      ).rejects.toThrow(/already on shard/);

      // A write that bypasses the SDK, straight to legacy: refused by legacy's fence, counted.
      const direct = await legacy.pool
        .query(
          "insert into events (tenant_id, kind, payload, created_at) values ($1, 'bypass', '{}', now())",
          [tenant],
        )
        .then(
          () => null,
          (e: { code?: string }) => e.code,
        );
      expect(direct).toBe(FENCE_SQLSTATE.notOwner);
      await waitFor("the refused write to show as a stray write", () =>
        db().strayWrite.findFirst({ where: { planId: plan.id, tenantKey: tenant, reason: "not_owner" } }),
      );

      // Writes land on the shard for a while, then the tenant goes back.
      const before = workload.stats().acknowledged;
      await waitFor("writes on the shard", async () => workload.stats().acknowledged > before + 300);
      await waitFor("the reverse stream to report its lag", async () => {
        const p = await previewCutover({ planId: plan.id, tenantKey: tenant });
        return p.reverseLagMs !== null && p.blockers.length === 0;
      });
      const back = await requestCutover(actor, {
        planId: plan.id,
        tenantKey: tenant,
        reason: "take it back",
        budgetMs: BUDGET_MS,
      });
      const backDone = await cutoverEnded(back.cutoverId);
      expect(backDone.error).toBeNull();
      expect(backDone.direction).toBe("to-legacy");
      const after = workload.stats().acknowledged;
      await waitFor("writes on legacy again", async () => workload.stats().acknowledged > after + 200);
    } finally {
      await workload.stop();
    }
    const stats = workload.stats();
    expect(stats.unexpected).toEqual([]);
    expect(
      Object.keys(stats.retries).every((name) => ["TenantFrozenError", "StaleRouteError"].includes(name)),
    ).toBe(true);

    // Both directions caught up: every acknowledged write is on legacy and on the tenant's shard.
    await waitForCatchUp(legacy.pool, movement.slotName);
    await waitForReverseCatchUp(shard.pool, reverseSlotName(plan.id, shardOrdinal));
    const entries = workload.entries();
    expect(entries.length).toBeGreaterThan(500);
    const ownEntries = (pool: pg.Pool, where: string, ordinal: number | null) =>
      ledgerMismatches(
        pool,
        entries.filter((e) => ordinal === null || placement.shardFor(e.tenant) === ordinal),
        where,
      );
    expect(await ownEntries(legacy.pool, "legacy", null)).toEqual([]);
    for (const [ordinal, s] of shards.entries())
      expect(await ownEntries(s.pool, `shard-${ordinal}`, ordinal)).toEqual([]);
    expect(
      await compareShards(
        legacy.pool,
        shards.map((s) => s.pool),
        schema,
        placement,
      ),
    ).toEqual([]);

    const history = await listCutovers({ planId: plan.id, tenantKey: tenant, limit: 10 });
    expect(history.map((h) => [h.direction, h.status])).toEqual([
      ["to-legacy", "done"],
      ["to-shard", "done"],
    ]);
    // The budget bounds the freeze up to the flip; the flip and the unfreeze come after it.
    for (const h of history) expect(h.freezeMs).toBeLessThan(2 * BUDGET_MS);
    console.log(
      `cutover-runner: ${stats.acknowledged} writes acknowledged (${stats.writesPerSecond.toFixed(0)}/s), retries ${JSON.stringify(stats.retries)}, freeze ${history.map((h) => `${h.direction} ${h.freezeMs} ms`).join(", ")}`,
    );
  });
});
