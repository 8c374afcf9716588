// The "Done means": under an SDK write workload (inserts, updates, deletes; hot and small
// tenants; multi-table transactions), many tenants are cut over to their shards, several at a time,
// and some back — and every acknowledged write is found where it belongs, every row of every table
// is equal on legacy and the shards, and the only errors the application saw are the SDK's typed
// retryable ones. Reports the freeze window (freeze_started_at → freeze_ended_at) p50/p99 and the
// cutovers per second.
//
// Scale by env: SHARDSHIFT_LEDGER_TENANTS (default 300), SHARDSHIFT_LEDGER_CUTOVERS (200),
// SHARDSHIFT_LEDGER_BACK (30), SHARDSHIFT_LEDGER_PARALLEL (8), SHARDSHIFT_LEDGER_RATE (1,000 writes/s),
// SHARDSHIFT_LEDGER_BUDGET_MS (the plan's 2 s), SHARDSHIFT_LEDGER_MIXED (0: see MIXED),
// SHARDSHIFT_LEDGER_TIMEOUT_MS (1,200,000: the test's own limit, for runs at the scale).
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRouter, httpMapSource, type Router } from "../../../sdk";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { systemActor } from "../../services/actor";
import { startDataMovement } from "../../services/movement/movement";
import { createApiToken } from "../../services/routing/api-tokens";
import { previewCutover, requestCutover } from "../../services/routing/cutover";
import { closeRoutingMapNotifier } from "../../services/routing/map-notifier";
import { compareShards } from "../../testing/compare-shards";
import { useControlPlane } from "../../testing/control-plane";
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
import { FREEZES_AT_ONCE } from "./cutover-scheduler";

const TENANTS = Number(process.env.SHARDSHIFT_LEDGER_TENANTS ?? 300);
const CUTOVERS = Number(process.env.SHARDSHIFT_LEDGER_CUTOVERS ?? 200);
const BACK = Number(process.env.SHARDSHIFT_LEDGER_BACK ?? 30);
const PARALLEL = Number(process.env.SHARDSHIFT_LEDGER_PARALLEL ?? 8);
const RATE = Number(process.env.SHARDSHIFT_LEDGER_RATE ?? 1000);
/**
 * Tenants after the first CUTOVERS cut over to their shards WHILE the first BACK go back (both
 * directions into the same databases at once, inserts on both sides: their sequences).
 */
const MIXED = Number(process.env.SHARDSHIFT_LEDGER_MIXED ?? 0);
/** Freeze budget per attempt; the plan's (2 s) when unset. */
const BUDGET_MS = process.env.SHARDSHIFT_LEDGER_BUDGET_MS
  ? Number(process.env.SHARDSHIFT_LEDGER_BUDGET_MS)
  : undefined;
/** An attempt aborted (a missed budget on a loaded machine) is asked again, at most this often. */
const ATTEMPTS_PER_TENANT = 4;

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
let http: Awaited<ReturnType<typeof startRoutingHttp>>;
let worker: Worker | null = null;
let router: Router | null = null;
const actor = systemActor("cutover-ledger-test", "engineer@test");

beforeAll(async () => {
  control = await useControlPlane("cl_control");
  legacy = await createTestDatabase("cl_legacy");
  shards = [await createTestDatabase("cl_shard0"), await createTestDatabase("cl_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: TENANTS, rows: TENANTS * 150, seed: 13 });
  http = await startRoutingHttp();
}, 180_000);

afterAll(async () => {
  await router?.close();
  await worker?.stop();
  await http?.close();
  await closeRoutingMapNotifier();
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

interface Outcome {
  tenant: string;
  status: string;
  attempts: number;
  freezeMs: number | null;
  error: string | null;
}

/** Cuts `tenants` over, `parallel` attempts in flight at a time; an aborted one is asked again. */
async function cutOver(planId: string, tenants: string[], parallel: number): Promise<Outcome[]> {
  const queue = [...tenants];
  const outcomes: Outcome[] = [];
  const lane = async () => {
    for (let tenant = queue.shift(); tenant !== undefined; tenant = queue.shift()) {
      let outcome: Outcome = { tenant, status: "none", attempts: 0, freezeMs: null, error: null };
      while (outcome.status !== "done" && outcome.attempts < ATTEMPTS_PER_TENANT) {
        // Asked again as an operator would: once the pre-check passes (the abort's message says
        // "wait for it to catch up, then try again"). Asked at once, a tenant lost all its attempts
        // in a second of lag past the budget's share on a loaded machine (the full suite: 198/200).
        if (outcome.attempts > 0) {
          await waitFor(
            `the pre-check to pass for tenant ${tenant}`,
            async () =>
              (await previewCutover({ planId, tenantKey: tenant, budgetMs: BUDGET_MS })).blockers.length ===
              0,
            30_000,
          ).catch(() => {}); // the attempt itself then says why not
        }
        const { cutoverId } = await requestCutover(actor, {
          planId,
          tenantKey: tenant,
          reason: "ledger run",
          budgetMs: BUDGET_MS,
        });
        const row = await waitFor(
          `cutover of tenant ${tenant}`,
          async () => {
            const r = await db().tenantCutover.findUniqueOrThrow({ where: { id: cutoverId } });
            return r.status === "done" || r.status === "aborted" ? r : null;
          },
          180_000,
        ).catch(async (error: Error) => {
          const r = await db().tenantCutover.findUnique({ where: { id: cutoverId } });
          throw new Error(
            `${error.message}; the attempt: ${JSON.stringify(r?.steps)} ${r?.status} ${r?.error}`,
          );
        });
        outcome = {
          tenant,
          status: row.status,
          attempts: outcome.attempts + 1,
          freezeMs:
            row.freezeStartedAt && row.freezeEndedAt
              ? row.freezeEndedAt.getTime() - row.freezeStartedAt.getTime()
              : null,
          error: row.error,
        };
      }
      outcomes.push(outcome);
    }
  };
  await Promise.all(Array.from({ length: parallel }, lane));
  return outcomes;
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
};

describe("cutover ledger", () => {
  it(`${CUTOVERS} tenants to their shards (${PARALLEL} at a time) and ${BACK} back under SDK writes`, {
    timeout: Number(process.env.SHARDSHIFT_LEDGER_TIMEOUT_MS ?? 1_200_000),
  }, async () => {
    const plan = await planAtTwoWayCdc(
      actor,
      "cutover ledger",
      legacy.url,
      shards.map((s) => s.url),
    );
    await startDataMovement(actor, { planId: plan.id, reason: "go", resetShards: true });
    worker = await startWorker(control.url, {
      log: (m) => {
        if (process.env.CUTOVER_TEST_LOG) console.log(`${new Date().toISOString()} ${m}`);
      },
    });
    await waitForBackfill(plan.id, 300_000);
    const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } });
    const schema = movement.sourceSchema as unknown as SourceSchema;
    const placement = hashPlacement(shards.length);
    const token = (await createApiToken(actor, { planId: plan.id, name: "ledger app" })).token;
    router = await createRouter({
      databases: {
        legacy: legacy.pool,
        "shard-0": shards[0]?.pool as pg.Pool,
        "shard-1": shards[1]?.pool as pg.Pool,
      },
      map: httpMapSource({ url: http.url, token, waitSeconds: 20 }),
    });
    const all = Array.from({ length: TENANTS }, (_, i) => String(i + 1));
    // Hot tenants (the demo's biggest come first) are written far more often than the rest.
    const weighted = [...all.slice(0, 5).flatMap((t) => Array(12).fill(t) as string[]), ...all];
    const workload = startLedgerWorkload(router, { tenants: weighted, lanes: 12, writesPerSecond: RATE });
    let there: Outcome[] = [];
    let back: Outcome[] = [];
    const startedAt = Date.now();
    try {
      await waitFor("forward replication to report its lag", () =>
        db().metricSample.findFirst({ where: { planId: plan.id, name: "cdc.lag_ms" } }),
      );
      there = await cutOver(plan.id, all.slice(0, CUTOVERS), PARALLEL);
      await waitFor("reverse replication to report its lag", () =>
        db().metricSample.findFirst({ where: { planId: plan.id, name: "cdc.reverse_lag_ms" } }),
      );
      const [returned, more] = await Promise.all([
        cutOver(plan.id, all.slice(0, BACK), PARALLEL),
        cutOver(plan.id, all.slice(CUTOVERS, CUTOVERS + MIXED), PARALLEL),
      ]);
      back = returned;
      there = [...there, ...more];
      const acknowledged = workload.stats().acknowledged;
      await waitFor(
        "writes after the last cutover",
        async () => workload.stats().acknowledged > acknowledged + 200,
      );
    } finally {
      await workload.stop();
    }
    const elapsedS = (Date.now() - startedAt) / 1000;
    const stats = workload.stats();
    const outcomes = [...there, ...back];
    const freezes = outcomes.flatMap((o) => (o.status === "done" && o.freezeMs !== null ? [o.freezeMs] : []));
    const aborted = await db().tenantCutover.findMany({ where: { planId: plan.id, status: "aborted" } });
    console.log(
      `cutover-ledger: ${there.filter((o) => o.status === "done").length}/${there.length} to shards, ` +
        `${back.filter((o) => o.status === "done").length}/${back.length} back, ${aborted.length} attempts aborted ` +
        `(${[...new Set(aborted.map((a) => (a.error ?? "").slice(0, 60)))].join(" | ")}); ` +
        `freeze p50 ${percentile(freezes, 50)} ms, p99 ${percentile(freezes, 99)} ms, max ${Math.max(...freezes)} ms; ` +
        `${(outcomes.length / elapsedS).toFixed(2)} cutovers/s over ${elapsedS.toFixed(0)} s; ` +
        `${stats.acknowledged} writes acknowledged (${stats.writesPerSecond.toFixed(0)}/s), retries ${JSON.stringify(stats.retries)}`,
    );
    expect(stats.unexpected).toEqual([]);
    expect(outcomes.filter((o) => o.status !== "done")).toEqual([]);
    // The worker's freezes take turns (cutover-scheduler.ts): never more of them at once than it allows.
    const windows = await db().tenantCutover.findMany({
      where: {
        planId: plan.id,
        status: "done",
        freezeStartedAt: { not: null },
        freezeEndedAt: { not: null },
      },
      select: { freezeStartedAt: true, freezeEndedAt: true },
    });
    const edges = windows
      .flatMap((w) => [
        { at: (w.freezeStartedAt as Date).getTime(), step: 1 },
        { at: (w.freezeEndedAt as Date).getTime(), step: -1 },
      ])
      .sort((a, b) => a.at - b.at || a.step - b.step);
    let atOnce = 0;
    let mostAtOnce = 0;
    for (const edge of edges) {
      atOnce += edge.step;
      mostAtOnce = Math.max(mostAtOnce, atOnce);
    }
    expect(mostAtOnce).toBeLessThanOrEqual(FREEZES_AT_ONCE);

    // Every tenant where the runs left it: the first BACK on legacy, the rest of them on their shard.
    const routes = await db().tenantRoute.findMany({ where: { planId: plan.id } });
    const shardIds = (
      await db().planShard.findMany({ where: { planId: plan.id }, orderBy: { ordinal: "asc" } })
    ).map((s) => s.databaseId);
    for (const [i, tenant] of all.slice(0, CUTOVERS + MIXED).entries()) {
      const route = routes.find((r) => r.tenantKey === tenant);
      expect(route?.frozen).toBe(false);
      expect(route?.ownerDatabaseId ?? null).toBe(i < BACK ? null : shardIds[placement.shardFor(tenant)]);
    }

    await waitForCatchUp(legacy.pool, movement.slotName, 120_000);
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
