// Adversarial (h-break): LEGACY's server crashes (pg_ctl -m immediate) in the middle of a cutover —
// the tenant's fence committed on legacy (frozen), the drain not begun — under SDK writes. The
// engine that drove it stops too (as a host failure would take both); a new one finds the attempt
// before the commit point and aborts it: the tenant ends on legacy, unfrozen, its writes resume
// there. Then it is cut over again, for real, and back. Every write the SDK acknowledged is on both
// sides at the end (legacy's acknowledged commits are durable, forward replication replays from the
// slot after the crash, exactly once), and legacy and the shards hold the same rows.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRouter, httpMapSource, type Router } from "../../../sdk";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { ensureDatabase } from "../../embedded/embedded-server";
import { systemActor } from "../../services/actor";
import { startDataMovement } from "../../services/movement/movement";
import { createApiToken } from "../../services/routing/api-tokens";
import { previewCutover, requestCutover } from "../../services/routing/cutover";
import { closeRoutingMapNotifier } from "../../services/routing/map-notifier";
import { compareShards } from "../../testing/compare-shards";
import { useControlPlane } from "../../testing/control-plane";
import { type CrashableServer, startCrashableServer } from "../../testing/crashable-server";
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

let control: Awaited<ReturnType<typeof useControlPlane>>;
let server: CrashableServer;
let legacy: pg.Pool;
let shards: TestDatabase[];
let http: Awaited<ReturnType<typeof startRoutingHttp>>;
let worker: Worker | null = null;
let router: Router | null = null;
const actor = systemActor("break-legacy-crash", "engineer@test");
const note = (m: string) => console.log(`${new Date().toISOString()} ${m}`);

beforeAll(async () => {
  control = await useControlPlane("blc_control");
  server = await startCrashableServer("blc-legacy", 4);
  await ensureDatabase(server.url(), "app");
  legacy = new pg.Pool({ connectionString: server.url("app"), max: 12 });
  legacy.on("error", () => {});
  shards = [await createTestDatabase("blc_shard0"), await createTestDatabase("blc_shard1")];
  await loadDemoDataset(legacy, { tenants: 24, rows: 6_000, seed: 13 });
  http = await startRoutingHttp();
}, 120_000);

afterAll(async () => {
  await router?.close();
  await worker?.stop();
  await http?.close();
  await closeRoutingMapNotifier();
  await control?.drop();
  for (const s of shards ?? []) await s.drop();
  await legacy?.end().catch(() => {});
  await server?.stop();
});

const cutoverEnded = (id: string) => waitForCutoverEnd(id, 90_000);

async function cutOver(planId: string, tenantKey: string, reason: string) {
  for (let attempt = 1; ; attempt++) {
    await waitFor(
      `no blocker for tenant ${tenantKey}'s cutover`,
      async () => (await previewCutover({ planId, tenantKey })).blockers.length === 0,
      90_000,
    );
    const { cutoverId } = await requestCutover(actor, { planId, tenantKey, reason, budgetMs: 5_000 });
    const ended = await cutoverEnded(cutoverId);
    note(`cutover ${ended.direction} of ${tenantKey}: ${ended.status} ${ended.error ?? ""}`);
    if (ended.status === "done") return ended;
    if (attempt === 3) throw new Error(`cutover of ${tenantKey} aborted 3 times: ${ended.error}`);
  }
}

describe("legacy crashes while a tenant is fenced on it", () => {
  it("aborts the attempt, writes resume on legacy, and nothing acknowledged is lost", {
    timeout: 300_000,
  }, async () => {
    const plan = await planAtTwoWayCdc(
      actor,
      "break legacy crash",
      server.url("app"),
      shards.map((s) => s.url),
    );
    const tenant = "4";
    const lines: string[] = [];
    await startDataMovement(actor, { planId: plan.id, reason: "go", resetShards: true });
    process.env.SHARDSHIFT_CUTOVER_PAUSE_AT = `fencing:${tenant}`;
    worker = await startWorker(control.url, { log: (m) => lines.push(m) });
    delete process.env.SHARDSHIFT_CUTOVER_PAUSE_AT;
    await waitForBackfill(plan.id, 120_000);
    const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } });
    const schema = movement.sourceSchema as unknown as SourceSchema;
    const placement = hashPlacement(2);
    const ordinal = placement.shardFor(tenant);
    const shard = shards[ordinal] as TestDatabase;

    const token = (await createApiToken(actor, { planId: plan.id, name: "crash app" })).token;
    router = await createRouter({
      databases: { legacy, "shard-0": shards[0]?.pool as pg.Pool, "shard-1": shards[1]?.pool as pg.Pool },
      map: httpMapSource({ url: http.url, token, waitSeconds: 20 }),
    });
    const workload = startLedgerWorkload(router, {
      tenants: [tenant, tenant, tenant, "9", "10"],
      lanes: 4,
      writesPerSecond: 200,
    });
    try {
      await waitFor(
        "forward lag reported",
        async () => (await previewCutover({ planId: plan.id, tenantKey: tenant })).blockers.length === 0,
        90_000,
      );
      const { cutoverId } = await requestCutover(actor, {
        planId: plan.id,
        tenantKey: tenant,
        reason: "legacy will crash",
        budgetMs: 5_000,
      });
      await waitFor("the runner to hold the fenced attempt", async () =>
        lines.some((l) => l.includes(cutoverId.slice(0, 8)) && l.includes("paused at fencing")),
      );
      expect((await db().tenantCutover.findUniqueOrThrow({ where: { id: cutoverId } })).status).toBe(
        "fencing",
      );
      await server.crash();
      note("legacy crashed with the tenant fenced");
      await worker.stop();
      await server.restart();
      note("legacy restarted");
      worker = await startWorker(control.url, { log: (m) => lines.push(m) });
      const ended = await cutoverEnded(cutoverId);
      note(`attempt ${ended.status}: ${ended.error}`);
      expect(ended.status).toBe("aborted");
      const route = await db().tenantRoute.findUnique({
        where: { planId_tenantKey: { planId: plan.id, tenantKey: tenant } },
      });
      expect(route?.ownerDatabaseId ?? null).toBeNull();
      expect(route?.frozen ?? false).toBe(false);
      const resumed = workload.stats().acknowledged;
      await waitFor(
        "writes on legacy after the crash",
        async () => workload.stats().acknowledged > resumed + 300,
        90_000,
      );

      await cutOver(plan.id, tenant, "again, legacy healthy");
      const there = workload.stats().acknowledged;
      await waitFor("writes on the shard", async () => workload.stats().acknowledged > there + 300);
      await cutOver(plan.id, tenant, "back");
      const back = workload.stats().acknowledged;
      await waitFor("writes on legacy again", async () => workload.stats().acknowledged > back + 200);
    } finally {
      await workload.stop();
    }
    const stats = workload.stats();
    note(
      `${stats.acknowledged} acknowledged; unexpected ${stats.unexpected.length}: ${stats.unexpected.slice(0, 3).join(" | ")}`,
    );

    await waitForCatchUp(legacy, movement.slotName, 90_000);
    const { rows } = await shard.pool.query<{ lsn: string }>(
      "select pg_current_wal_insert_lsn()::text as lsn",
    );
    const head = parseLsn(rows[0]?.lsn ?? "0/0");
    await waitFor(
      "reverse CDC to catch up",
      async () =>
        ((await readSlotStatus(shard.pool, reverseSlotName(plan.id, ordinal)))?.confirmedFlushLsn ?? 0n) >=
        head,
      90_000,
    );
    const entries = workload.entries();
    const onLegacy = await ledgerMismatches(legacy, entries, "db");
    note(`ledger mismatches on legacy: ${onLegacy.length} ${onLegacy.slice(0, 3).join(" | ")}`);
    expect(onLegacy.length).toBeLessThanOrEqual(stats.unexpected.length);
    for (const [i, s] of shards.entries()) {
      const mine = entries.filter((e) => placement.shardFor(e.tenant) === i);
      expect(await ledgerMismatches(s.pool, mine, "db")).toEqual(
        onLegacy.filter((m) => mine.some((e) => m.includes(`tenant ${e.tenant} key ${e.key}:`))),
      );
    }
    expect(
      await compareShards(
        legacy,
        shards.map((s) => s.pool),
        schema,
        placement,
      ),
    ).toEqual([]);
  });
});
