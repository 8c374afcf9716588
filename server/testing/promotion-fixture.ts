// What the promotion tests on real servers share: a plan under the SDK ledger workload with its
// tenants fenced and a worker process driving it, the waits for gates and promotions, each
// promotion's figures, and the final proof (no acknowledged write lost, every row equal on legacy
// and the shards, each tenant wholly on one side). `promotion-ledger.test.ts` (a SIGKILL mid-cohort)
// and `demo-ladder.test.ts` (the default 1/5/25/100% ladder over the demo tenants) use it.
import type pg from "pg";
import { expect } from "vitest";
import { createRouter, httpMapSource, type Router } from "../../sdk";
import { db } from "../db";
import { loadDemoDataset } from "../demo/dataset";
import type { SourceSchema } from "../engine/analysis/introspect";
import { reverseSlotName } from "../engine/cdc/reverse-slot";
import { parseLsn, readSlotStatus } from "../engine/cdc/slot";
import { hashPlacement } from "../engine/router/placement";
import type { Prisma } from "../generated/prisma/client";
import { type Actor, systemActor } from "../services/actor";
import { evaluateCohortGates } from "../services/cohorts/gates";
import { listPromotions, retryTenant } from "../services/cohorts/promotion";
import { startDataMovement } from "../services/movement/movement";
import { createApiToken } from "../services/routing/api-tokens";
import { closeRoutingMapNotifier } from "../services/routing/map-notifier";
import { installFences } from "../services/routing/routing";
import { compareShards } from "./compare-shards";
import { useControlPlane as migratedControlPlane } from "./control-plane";
import { createTestDatabase, type TestDatabase } from "./databases";
import { type LedgerWorkload, ledgerMismatches, startLedgerWorkload } from "./ledger-workload";
import { waitForBackfill, waitForCatchUp } from "./movement-fixture";
import { planAtTwoWayCdc } from "./plan-fixture";
import { startRoutingHttp } from "./routing-http";
import { spawnWorker, type WorkerProcess, waitFor } from "./worker-process";

export const promotionOperator: Actor = {
  ...systemActor("promotion-test", "operator@test"),
  role: "operator",
};

export const note = (m: string) => console.log(`${new Date().toISOString()} ${m}`);

/** Legacy with the demo dataset, two shards, a control plane and the routing map's HTTP server. */
export interface PromotionServers {
  control: Awaited<ReturnType<typeof migratedControlPlane>>;
  legacy: TestDatabase;
  shards: TestDatabase[];
  http: Awaited<ReturnType<typeof startRoutingHttp>>;
  workers: WorkerProcess[];
  router: Router | null;
  close(): Promise<void>;
}

export async function startPromotionServers(
  prefix: string,
  dataset: { tenants: number; rows: number; seed: number },
): Promise<PromotionServers> {
  const control = await migratedControlPlane(`${prefix}_control`);
  const legacy = await createTestDatabase(`${prefix}_legacy`);
  const shards = [await createTestDatabase(`${prefix}_shard0`), await createTestDatabase(`${prefix}_shard1`)];
  await loadDemoDataset(legacy.pool, dataset);
  const http = await startRoutingHttp();
  const servers: PromotionServers = {
    control,
    legacy,
    shards,
    http,
    workers: [],
    router: null,
    async close() {
      for (const w of servers.workers) await w.kill();
      await servers.router?.close();
      await http.close();
      await closeRoutingMapNotifier();
      await control.drop();
      await legacy.drop();
      for (const s of shards) await s.drop();
    },
  };
  return servers;
}

export async function startWorkerProcess(
  servers: PromotionServers,
  lines?: string[],
): Promise<WorkerProcess> {
  const worker = spawnWorker({ onLine: lines ? (line) => lines.push(line) : undefined });
  servers.workers.push(worker);
  await worker.ready;
  return worker;
}

export async function setSettings(planId: string, patch: Record<string, unknown>) {
  const plan = await db().plan.findUniqueOrThrow({ where: { id: planId }, select: { settings: true } });
  await db().plan.update({
    where: { id: planId },
    data: { settings: { ...(plan.settings as object), ...patch } as Prisma.InputJsonValue },
  });
}

/**
 * Settings a loaded 2-core machine meets: gates judged over 1 min, no soak wait, parity not
 * required (its full check runs every 10 min), a generous lag threshold and freeze budget. A worker
 * process starting at load 30+ misses 3-s probes and lag samples for tens of seconds: the breaker's
 * rules would (rightly) stop the promotion; these tests are about promotions finishing, the rules
 * have tests of their own.
 */
export const LOADED_MACHINE_SETTINGS = {
  gateWindowMinutes: 1,
  gateSoakMinutes: 0,
  requireCleanParity: false,
  cdcLagThresholdMs: 60_000,
  promotionConcurrency: 4,
  freezeBudgetMs: 10_000,
  breakerShardDownSeconds: 600,
  breakerLagThresholdMs: 600_000,
} as const;

/**
 * The plan at two-way CDC with the movement started, a worker running, every table copied, the
 * census taken and the fences installed: ready for a ladder to be drawn.
 */
export async function planReadyForCohorts(
  servers: PromotionServers,
  name: string,
  settings: Record<string, unknown>,
  lines?: string[],
) {
  const plan = await planAtTwoWayCdc(
    promotionOperator,
    name,
    servers.legacy.url,
    servers.shards.map((s) => s.url),
  );
  await setSettings(plan.id, settings);
  await startDataMovement(promotionOperator, { planId: plan.id, reason: "go", resetShards: true });
  const worker = await startWorkerProcess(servers, lines);
  note(`worker ${worker.pid} running`);
  await waitForBackfill(plan.id, 300_000);
  await waitFor(
    "the tenant census",
    async () => (await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } })).censusAt,
    120_000,
  );
  await installFences(promotionOperator, { planId: plan.id, reason: "promotion test" });
  const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } });
  return {
    plan,
    worker,
    slotName: movement.slotName,
    schema: movement.sourceSchema as unknown as SourceSchema,
  };
}

/** The router SDK on the test's databases, following the plan's map by HTTP long-poll. */
export async function startPlanRouter(servers: PromotionServers, planId: string): Promise<Router> {
  const token = (await createApiToken(promotionOperator, { planId, name: "promotion app" })).token;
  servers.router = await createRouter({
    databases: {
      legacy: servers.legacy.pool,
      "shard-0": servers.shards[0]?.pool as pg.Pool,
      "shard-1": servers.shards[1]?.pool as pg.Pool,
    },
    map: httpMapSource({ url: servers.http.url, token, waitSeconds: 20 }),
  });
  return servers.router;
}

export function startTenantWorkload(router: Router, tenants: number, writesPerSecond: number) {
  const all = Array.from({ length: tenants }, (_, i) => String(i + 1));
  return { all, workload: startLedgerWorkload(router, { tenants: all, lanes: 6, writesPerSecond }) };
}

/** Polls cohort `ordinal`'s gates until they are open; a timeout says which still block and why. */
export async function waitForGatesOpen(planId: string, ordinal: number, timeoutMs = 240_000) {
  let last = "";
  await waitFor(
    `cohort ${ordinal}'s gates to pass`,
    async () => {
      const gates = await evaluateCohortGates(planId, ordinal);
      last = gates.gates
        .filter((g) => g.verdict !== "pass")
        .map((g) => `${g.id}: ${g.reason}`)
        .join(" | ");
      return gates.open;
    },
    timeoutMs,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; still: ${last}`);
  });
}

export async function waitForPromotionEnd(planId: string, promotionId: string) {
  return waitFor(
    `promotion ${promotionId} to end`,
    async () => {
      const [p] = await listPromotions({ planId, promotionId, limit: 1 });
      return p && ["done", "stopped", "failed"].includes(p.status) ? p : null;
    },
    600_000,
  );
}

/** Runs the promotion to its end, retrying aborted tenants (each at most 5 times). */
export async function finishPromotion(planId: string, promotionId: string) {
  for (let round = 0; ; round++) {
    const p = await waitForPromotionEnd(planId, promotionId);
    const aborted = p.tenants.filter((t) => t.status === "aborted");
    note(
      `promotion of cohort ${p.ordinal} ${p.status}: ${p.counts.done} done, ${aborted.length} aborted ` +
        `(${[...new Set(aborted.map((t) => (t.error ?? "").slice(0, 80)))].join(" | ")})`,
    );
    if (p.stopJudgement) {
      note(`stopped by ${JSON.stringify(p.stopJudgement)}`);
      const strays = await db().strayWrite.findMany({ where: { planId } });
      const attempts = await db().tenantCutover.findMany({
        where: { planId },
        select: { tenantKey: true, createdAt: true, freezeStartedAt: true, endedAt: true, status: true },
      });
      note(`strays ${JSON.stringify(strays, (_, v) => (typeof v === "bigint" ? v.toString() : v))}`);
      note(`attempts ${JSON.stringify(attempts)}`);
    }
    expect(p.status).toBe("done");
    if (aborted.length === 0 || round >= 5) return p;
    for (const t of aborted) {
      await retryTenant(promotionOperator, {
        promotionId,
        tenantKey: t.tenant,
        reason: "aborted on a loaded machine",
      });
    }
  }
}

export const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
};

type EndedPromotion = Awaited<ReturnType<typeof finishPromotion>>;

/** "cohort N: T tenants in S s …, freeze p50 … p99 …" for the test's report line. */
export async function promotionFigure(planId: string, p: EndedPromotion): Promise<string> {
  const ms = (p.endedAt?.getTime() ?? 0) - (p.startedAt?.getTime() ?? 0);
  const freezes = (
    await db().tenantCutover.findMany({
      where: { planId, status: "done", tenantKey: { in: p.tenants.map((t) => t.tenant) } },
    })
  ).flatMap((c) =>
    c.freezeStartedAt && c.freezeEndedAt ? [c.freezeEndedAt.getTime() - c.freezeStartedAt.getTime()] : [],
  );
  return (
    `cohort ${p.ordinal}: ${p.tenants.length} tenants in ${(ms / 1000).toFixed(1)} s (start to end, retries included), ` +
    `freeze p50 ${percentile(freezes, 50)} ms p99 ${percentile(freezes, 99)} ms`
  );
}

/** Lets the workload acknowledge some more writes (after the last promotion, on the shards). */
export async function waitForMoreWrites(workload: LedgerWorkload) {
  const acknowledged = workload.stats().acknowledged;
  await waitFor(
    "writes after the promotions",
    async () => workload.stats().acknowledged > acknowledged + 100,
  );
}

/**
 * The proof after the promotions: no unexpected SDK error, each tenant wholly on one side (those
 * whose cohort is at most `promotedThrough` on its shard, the rest on legacy, nothing frozen, no
 * attempt in flight), every acknowledged write's final value on legacy and its shard, every row
 * equal on legacy and the shards once CDC both ways has caught up.
 */
export async function expectNothingLost(
  servers: PromotionServers,
  input: {
    planId: string;
    slotName: string;
    schema: SourceSchema;
    workload: LedgerWorkload;
    tenants: string[];
    promotedThrough: number;
  },
) {
  const { planId, workload } = input;
  expect(workload.stats().unexpected).toEqual([]);
  const placement = hashPlacement(servers.shards.length);
  const members = await db().cohortMember.findMany({ where: { planId } });
  const routes = await db().tenantRoute.findMany({ where: { planId } });
  const shardIds = (await db().planShard.findMany({ where: { planId }, orderBy: { ordinal: "asc" } })).map(
    (s) => s.databaseId,
  );
  for (const tenant of input.tenants) {
    const ordinal = members.find((m) => m.tenantKey === tenant)?.ordinal ?? Number.POSITIVE_INFINITY;
    const route = routes.find((r) => r.tenantKey === tenant);
    expect(route?.frozen ?? false).toBe(false);
    expect(route?.ownerDatabaseId ?? null).toBe(
      ordinal <= input.promotedThrough ? shardIds[placement.shardFor(tenant)] : null,
    );
  }
  expect(await db().tenantCutover.count({ where: { planId, status: { notIn: ["done", "aborted"] } } })).toBe(
    0,
  );

  await waitForCatchUp(servers.legacy.pool, input.slotName, 120_000);
  for (const [ordinal, shard] of servers.shards.entries()) {
    const { rows } = await shard.pool.query<{ lsn: string }>(
      "select pg_current_wal_insert_lsn()::text as lsn",
    );
    const head = parseLsn(rows[0]?.lsn ?? "0/0");
    await waitFor(
      `reverse CDC of shard ${ordinal} to catch up`,
      async () =>
        ((await readSlotStatus(shard.pool, reverseSlotName(planId, ordinal)))?.confirmedFlushLsn ?? 0n) >=
        head,
      120_000,
    );
  }
  const entries = workload.entries();
  expect(await ledgerMismatches(servers.legacy.pool, entries, "legacy")).toEqual([]);
  for (const [ordinal, s] of servers.shards.entries()) {
    const mine = entries.filter((e) => placement.shardFor(e.tenant) === ordinal);
    expect(await ledgerMismatches(s.pool, mine, `shard-${ordinal}`)).toEqual([]);
  }
  expect(
    await compareShards(
      servers.legacy.pool,
      servers.shards.map((s) => s.pool),
      input.schema,
      placement,
    ),
  ).toEqual([]);
}
