// Adversarial (h-cut): an operator changes the tenant's route on the map while its cutover is
// between the freeze and the flip. The flip is decided on the route the runner knows (owned by the
// old owner, frozen) and, when the map refuses that (SQLSTATE SS101), it used to be decided again
// on a fresh read — and written whatever that read said. Here the operator unfreezes the tenant
// during the drain (the fence on legacy follows at once, so the tenant's writes resume there, past
// the freeze position the drain waits for): the cutover must not flip the tenant to the shard —
// the drain no longer covers its writes on legacy — but abort, leaving the map as the operator
// wrote it.
//
// The drain is held by a lock on the shard's events table while another tenant of that shard
// writes on legacy: forward replication cannot apply it, so it cannot reach the freeze position.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { systemActor } from "../../services/actor";
import { startDataMovement } from "../../services/movement/movement";
import { previewCutover, requestCutover } from "../../services/routing/cutover";
import { closeRoutingMapNotifier } from "../../services/routing/map-notifier";
import { changeTenantRoutes, installFences } from "../../services/routing/routing";
import { useControlPlane } from "../../testing/control-plane";
import { waitForCutoverEnd } from "../../testing/cutover-fixture";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitForBackfill } from "../../testing/movement-fixture";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";
import type { SourceSchema } from "../analysis/introspect";
import { ensureReverseSlot } from "../cdc/reverse-slot";
import { hashPlacement } from "../router/placement";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
let worker: Worker | null = null;
const actor = systemActor("break-operator-change", "engineer@test");

beforeAll(async () => {
  control = await useControlPlane("boc_control");
  legacy = await createTestDatabase("boc_legacy");
  shards = [await createTestDatabase("boc_shard0"), await createTestDatabase("boc_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: 12, rows: 2_000, seed: 3 });
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await closeRoutingMapNotifier();
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

const insertEvent = (client: pg.Pool | pg.Client, tenant: string, kind: string) =>
  client.query<{ id: string }>(
    "insert into events (tenant_id, kind, payload, created_at) values ($1, $2, '{}', now()) returning id::text",
    [tenant, kind],
  );

describe("an operator's map change between a cutover's freeze and its flip", () => {
  it("aborts the cutover instead of flipping a tenant whose writes resumed on the old owner", {
    timeout: 110_000,
  }, async () => {
    const plan = await planAtTwoWayCdc(
      actor,
      "break operator change",
      legacy.url,
      shards.map((s) => s.url),
    );
    await startDataMovement(actor, { planId: plan.id, reason: "go", resetShards: true });
    worker = await startWorker(control.url, {
      log: (m) => {
        if (process.env.BREAK_TEST_LOG && m.includes("[cutover"))
          console.log(`${new Date().toISOString()} ${m}`);
      },
    });
    await waitForBackfill(plan.id, 60_000);
    const placement = hashPlacement(2);
    const tenant = "5";
    const ordinal = placement.shardFor(tenant);
    const shard = shards[ordinal] as TestDatabase;
    // Another tenant placed on the same shard and still on legacy: its write holds the drain.
    const neighbour = Array.from({ length: 12 }, (_, i) => String(i + 1)).find(
      (t) => t !== tenant && placement.shardFor(t) === ordinal,
    ) as string;
    const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } });
    const schema = movement.sourceSchema as unknown as SourceSchema;
    await waitFor(
      "no blocker",
      async () => (await previewCutover({ planId: plan.id, tenantKey: tenant })).blockers.length === 0,
      60_000,
    );
    // Done beforehand: both take locks the held drain below would block.
    await installFences(actor, { planId: plan.id, reason: "fences first" });
    await ensureReverseSlot(shard.pool, { planId: plan.id, shardOrdinal: ordinal, schema });

    const holder = new pg.Client({ connectionString: shard.url });
    await holder.connect();
    let held = false;
    try {
      await holder.query("begin");
      await holder.query("lock table events in access exclusive mode");
      held = true;
      await insertEvent(legacy.pool, neighbour, "holds the drain");
      await waitFor(
        "forward replication to wait for the shard's events table",
        async () =>
          (
            await shard.pool.query(
              "select 1 from pg_locks where not granted and relation = 'events'::regclass and database = (select oid from pg_database where datname = current_database())",
            )
          ).rowCount !== 0,
        20_000,
      );
      const { cutoverId } = await requestCutover(actor, {
        planId: plan.id,
        tenantKey: tenant,
        reason: "while an operator changes the map",
        budgetMs: 30_000,
      });
      await waitFor(
        "the cutover to drain",
        async () => {
          const r = await db().tenantCutover.findUniqueOrThrow({ where: { id: cutoverId } });
          if (r.status === "done" || r.status === "aborted") throw new Error(`ended early: ${r.error}`);
          return r.status === "draining";
        },
        30_000,
      );
      // The operator lifts the freeze: the map says legacy, unfrozen; legacy's fence follows.
      const outcome = await changeTenantRoutes(actor, {
        planId: plan.id,
        changes: [{ tenantKey: tenant, frozen: false }],
        reason: "an operator unfreezes it",
      });
      expect(outcome.fences.filter((f) => f.error)).toEqual([]);
      // So the tenant's writes resume on legacy, past the freeze position the drain waits for.
      await insertEvent(legacy.pool, tenant, "after the unfreeze");
      await holder.query("commit");
      held = false;
      const ended = await waitForCutoverEnd(cutoverId, 40_000);
      const route = await db().tenantRoute.findUnique({
        where: { planId_tenantKey: { planId: plan.id, tenantKey: tenant } },
      });
      expect({ status: ended.status, owner: route?.ownerDatabaseId ?? null, frozen: route?.frozen }).toEqual({
        status: "aborted",
        owner: null,
        frozen: false,
      });
      expect(ended.error).toMatch(/route .* changed/);
      // Legacy still takes the tenant's writes.
      expect((await insertEvent(legacy.pool, tenant, "still legacy's")).rowCount).toBe(1);
    } finally {
      if (held) await holder.query("rollback").catch(() => {});
      await holder.end();
    }
  });
});
