// Adversarial (h-cut): the old owner's fence change runs as two scripts — the tenant's lock, then the
// change — so between them its transaction sits idle on the old owner holding the tenant's lock
// exclusively. If the worker stalls there (a stopped process, a host gone without closing its
// sockets, a GC pause past the budget), every writer of the tenant on the old owner waits on that
// lock, with no end: nothing bounded the idle transaction. It must end within the freeze budget
// (the server ends the idle session), so the tenant's writers on the old owner get an answer —
// written, or refused retryably — instead of hanging on the lock for as long as the stall lasts.
// The stall is SHARDSHIFT_CUTOVER_PAUSE_AT=fence-locked, which holds the runner right there.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { systemActor } from "../../services/actor";
import { startDataMovement } from "../../services/movement/movement";
import { previewCutover, requestCutover } from "../../services/routing/cutover";
import { closeRoutingMapNotifier } from "../../services/routing/map-notifier";
import { installFences } from "../../services/routing/routing";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitForBackfill } from "../../testing/movement-fixture";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";
import type { SourceSchema } from "../analysis/introspect";
import { ensureReverseSlot } from "../cdc/reverse-slot";
import { hashPlacement } from "../router/placement";
import { FENCE_LOCK_CLASS, FENCE_SQLSTATE } from "../routing/fence-sql";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
let worker: Worker | null = null;
const actor = systemActor("break-stalled-fence", "engineer@test");
const TENANT = "5";
const BUDGET_MS = 3_000;

beforeAll(async () => {
  control = await useControlPlane("bsf_control");
  legacy = await createTestDatabase("bsf_legacy");
  shards = [await createTestDatabase("bsf_shard0"), await createTestDatabase("bsf_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: 12, rows: 2_000, seed: 3 });
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await closeRoutingMapNotifier();
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

describe("a worker stalled between the two scripts of the old owner's fence change", () => {
  it("holds the tenant's writes on the old owner no longer than the freeze budget", {
    timeout: 110_000,
  }, async () => {
    const plan = await planAtTwoWayCdc(
      actor,
      "break stalled fence",
      legacy.url,
      shards.map((s) => s.url),
    );
    await startDataMovement(actor, { planId: plan.id, reason: "go", resetShards: true });
    const before = process.env.SHARDSHIFT_CUTOVER_PAUSE_AT;
    process.env.SHARDSHIFT_CUTOVER_PAUSE_AT = `fence-locked:${TENANT}`;
    try {
      worker = await startWorker(control.url, {
        log: (m) => {
          if (process.env.BREAK_TEST_LOG && m.includes("[cutover"))
            console.log(`${new Date().toISOString()} ${m}`);
        },
      });
    } finally {
      if (before === undefined) delete process.env.SHARDSHIFT_CUTOVER_PAUSE_AT;
      else process.env.SHARDSHIFT_CUTOVER_PAUSE_AT = before;
    }
    await waitForBackfill(plan.id, 60_000);
    const ordinal = hashPlacement(2).shardFor(TENANT);
    const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } });
    const schema = movement.sourceSchema as unknown as SourceSchema;
    await waitFor(
      "no blocker",
      async () => (await previewCutover({ planId: plan.id, tenantKey: TENANT })).blockers.length === 0,
      60_000,
    );
    await installFences(actor, { planId: plan.id, reason: "fences first" });
    await ensureReverseSlot((shards[ordinal] as TestDatabase).pool, {
      planId: plan.id,
      shardOrdinal: ordinal,
      schema,
    });

    await requestCutover(actor, {
      planId: plan.id,
      tenantKey: TENANT,
      reason: "stalls",
      budgetMs: BUDGET_MS,
    });
    // The fence transaction on legacy holds the tenant's lock exclusively, idle: the runner stalled.
    await waitFor(
      "the fence transaction to hold the tenant's lock",
      async () =>
        (
          await legacy.pool.query(
            `select 1 from pg_locks l join pg_stat_activity a using (pid)
             where l.locktype = 'advisory' and l.classid = $1 and l.objid = (hashtext($2)::bigint & 4294967295)
               and l.mode = 'ExclusiveLock' and l.granted and a.state = 'idle in transaction'`,
            [FENCE_LOCK_CLASS, TENANT],
          )
        ).rowCount === 1,
      30_000,
    );
    // A writer of the tenant on legacy (the fence there not changed yet: it is allowed) waits on it.
    const writer = new pg.Client({ connectionString: legacy.url });
    await writer.connect();
    try {
      const started = Date.now();
      const write = writer
        .query(
          "insert into events (tenant_id, kind, payload, created_at) values ($1, 'during the stall', '{}', now())",
          [TENANT],
        )
        .then(
          () => "written",
          // A writer that waited on a fence change is refused retryably (SS001): it may retry.
          (e: { code?: string }) =>
            e.code === FENCE_SQLSTATE.frozen ? "refused, retryable" : `failed: ${e}`,
        );
      const outcome = await Promise.race([
        write,
        new Promise<string>((resolve) => setTimeout(() => resolve("still waiting"), BUDGET_MS + 7_000)),
      ]);
      expect(["written", "refused, retryable"]).toContain(outcome);
      expect(Date.now() - started).toBeLessThan(BUDGET_MS + 7_000);
      // Its retry gets an answer at once too (written, or refused retryably once the fence watch
      // brought legacy's fence to the map, which says frozen while the attempt is held): it does
      // not wait.
      const retried = Date.now();
      await writer
        .query(
          "insert into events (tenant_id, kind, payload, created_at) values ($1, 'retried', '{}', now())",
          [TENANT],
        )
        .catch((e: { code?: string }) => {
          if (e.code !== FENCE_SQLSTATE.frozen) throw e;
        });
      expect(Date.now() - retried).toBeLessThan(2_000);
    } finally {
      // Unblock it for the clean-up (without the fix the stalled transaction still holds the lock).
      await legacy.pool
        .query(
          "select pg_terminate_backend(pid) from pg_stat_activity where state = 'idle in transaction' and datname = current_database()",
        )
        .catch(() => {});
      await writer.end().catch(() => {});
    }
  });
});
