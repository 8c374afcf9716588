// A cutover on a quiet legacy (issue 12): forward CDC wrote its lag samples only when it applied
// something, so once legacy had seen no writes for the pre-check's window the pre-check read "the
// stream is not running" and refused every cutover. The stream's idle tick (cdc/idle-lag.ts) now
// samples a caught-up stream's lag as 0. The window is shortened here (SHARDSHIFT_LAG_SAMPLE_MAX_AGE_MS)
// so the quiet stretch that used to break it takes seconds, not minutes. Legacy runs on a server of
// its own: on the shared test server other databases' WAL keeps the stream's keepalives coming,
// which hid the problem (each one handed out an empty batch, sampled as lag 0 without a check).
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { systemActor } from "../../services/actor";
import { verifyAuditChain } from "../../services/audit/audit-log";
import { startDataMovement } from "../../services/movement/movement";
import { previewCutover, requestCutover } from "../../services/routing/cutover";
import { installFences } from "../../services/routing/routing";
import { useControlPlane } from "../../testing/control-plane";
import { type CrashableServer, startCrashableServer } from "../../testing/crashable-server";
import { waitForCutoverEnd } from "../../testing/cutover-fixture";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitForBackfill } from "../../testing/movement-fixture";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";

const WINDOW_MS = 3_000;
const BUDGET_MS = Number(process.env.SHARDSHIFT_CUTOVER_TEST_BUDGET_MS ?? 5_000);

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacyServer: CrashableServer;
let legacy: { url: string; pool: pg.Pool };
let shards: TestDatabase[];
let worker: Worker | null = null;
let planId = "";
const actor = systemActor("quiet-legacy-test", "engineer@test");
const savedWindow = process.env.SHARDSHIFT_LAG_SAMPLE_MAX_AGE_MS;

beforeAll(async () => {
  process.env.SHARDSHIFT_LAG_SAMPLE_MAX_AGE_MS = String(WINDOW_MS);
  control = await useControlPlane("ql_control");
  legacyServer = await startCrashableServer("quiet-legacy", 17);
  const admin = new pg.Client({ connectionString: legacyServer.url("postgres") });
  await admin.connect();
  await admin.query("create database monolith");
  await admin.end();
  legacy = {
    url: legacyServer.url("monolith"),
    pool: new pg.Pool({ connectionString: legacyServer.url("monolith"), max: 8 }),
  };
  legacy.pool.on("error", () => {});
  shards = [await createTestDatabase("ql_shard0"), await createTestDatabase("ql_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: 12, rows: 2_000, seed: 7 });
}, 120_000);

afterAll(async () => {
  if (savedWindow === undefined) delete process.env.SHARDSHIFT_LAG_SAMPLE_MAX_AGE_MS;
  else process.env.SHARDSHIFT_LAG_SAMPLE_MAX_AGE_MS = savedWindow;
  await worker?.stop();
  await control?.drop();
  await legacy?.pool.end();
  await legacyServer?.stop();
  for (const s of shards ?? []) await s.drop();
});

describe("cutover on a quiet legacy", () => {
  it("cuts a tenant over after legacy saw no writes for longer than the lag window", {
    timeout: 180_000,
  }, async () => {
    const plan = await planAtTwoWayCdc(
      actor,
      "quiet",
      legacy.url,
      shards.map((s) => s.url),
    );
    await startDataMovement(actor, { planId: plan.id, reason: "go", resetShards: true });
    worker = await startWorker(control.url, { log: () => {} });
    await waitForBackfill(plan.id, 90_000);
    // The fences' install is legacy's last write before the quiet stretch (the cutover would
    // otherwise install them itself, and that write would give the stream something to apply).
    await installFences(actor, { planId: plan.id, reason: "before the quiet stretch" });
    const quietFrom = Date.now();
    await waitFor(
      "legacy to have been quiet for twice the lag window",
      async () => Date.now() - quietFrom > 2 * WINDOW_MS,
      30_000,
    );
    const tenantKey = "3";
    const preview = await waitFor(
      "the pre-check to find a recent lag sample",
      async () => {
        const p = await previewCutover({ planId: plan.id, tenantKey });
        return p.blockers.length === 0 ? p : null;
      },
      10_000,
    );
    expect(preview.forwardLagMs).toBe(0);
    const { cutoverId } = await requestCutover(actor, {
      planId: plan.id,
      tenantKey,
      reason: "quiet legacy",
      budgetMs: BUDGET_MS,
    });
    const ended = await waitForCutoverEnd(cutoverId, 60_000);
    console.log(`quiet-legacy: ${ended.status}, steps ${JSON.stringify(ended.steps)}`);
    expect(ended.error).toBeNull();
    expect(ended.status).toBe("done");
    const route = await db().tenantRoute.findUniqueOrThrow({
      where: { planId_tenantKey: { planId: plan.id, tenantKey } },
    });
    expect(route.ownerDatabaseId).toBe(ended.toDatabaseId);
    expect(route.frozen).toBe(false);
    // Two map changes: the freeze, then the flip, which also unfreezes (one change fewer to queue
    // for the map's row lock; the tenant's writes are not held through a separate unfreeze).
    const changes = await db().routingChange.findMany({
      where: { planId: plan.id, tenantKey },
      orderBy: { version: "asc" },
    });
    const ours = changes.filter((c) => c.reason?.includes(`tenant ${tenantKey}:`));
    expect(ours.map((c) => [c.fromOwnerId, c.fromFrozen, c.toOwnerId, c.toFrozen])).toEqual([
      [null, false, null, true],
      [null, true, ended.toDatabaseId, false],
    ]);
    // The cutover's map changes were chained into the audit log by the database (atomic-change.ts):
    // the chain verifies, and holds the freeze and the flip (which also unfreezes) events.
    expect((await verifyAuditChain(db())).ok).toBe(true);
    const events = await db().auditEvent.count({ where: { planId: plan.id, action: "routing.change" } });
    expect(events).toBeGreaterThanOrEqual(2);
    planId = plan.id;
  });

  it("still measures the lag while another database on legacy's server writes all the time", {
    timeout: 120_000,
  }, async () => {
    // Legacy's insert position now moves on without pause, so the stream never holds it, and "caught
    // up" alone gave no sample at all: the pre-check refused every cutover (it lost breaker-races
    // on the shared test server in a full run). Its lag is judged from when the WAL it received was
    // written (cdc/idle-lag.ts).
    const admin = new pg.Client({ connectionString: legacyServer.url("postgres") });
    await admin.connect();
    await admin.query("create database neighbour");
    await admin.end();
    const neighbour = new pg.Client({ connectionString: legacyServer.url("neighbour") });
    await neighbour.connect();
    await neighbour.query("create table beats (at timestamptz)");
    let writing = true;
    const writer = (async () => {
      while (writing) await neighbour.query("insert into beats values (now())");
    })();
    try {
      const busyFrom = Date.now();
      await waitFor(
        "the neighbour to have written for twice the lag window",
        async () => Date.now() - busyFrom > 2 * WINDOW_MS,
        30_000,
      );
      const preview = await waitFor(
        "the pre-check to find a recent lag sample",
        async () => {
          const p = await previewCutover({ planId, tenantKey: "5" });
          return p.blockers.length === 0 ? p : null;
        },
        10_000,
      );
      console.log(`quiet-legacy beside a busy neighbour: forward lag ${preview.forwardLagMs} ms`);
      expect(preview.forwardLagMs).not.toBeNull();
      expect(preview.forwardLagMs as number).toBeLessThan(1_000);
    } finally {
      writing = false;
      await writer;
      await neighbour.end();
    }
  });
});
