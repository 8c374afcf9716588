// Adversarial (h-break): an application transaction on legacy wrote the tenant and stays open past
// the cutover's freeze budget (it holds the tenant's fence lock shared). The cutover cannot take
// the lock exclusively in time (nor, on a first cutover to the shard, create the shard's reverse
// slot, which waits for every transaction on the server): it must abort cleanly — nothing frozen left behind, the tenant on
// legacy, new writes accepted there at once — and the long transaction must still commit, its row
// then carried to the shard by forward replication and kept when the tenant is cut over later.
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
import { waitForCutoverEnd } from "../../testing/cutover-fixture";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitForBackfill } from "../../testing/movement-fixture";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";
import type { SourceSchema } from "../analysis/introspect";
import { ensureReverseSlot } from "../cdc/reverse-slot";
import { hashPlacement } from "../router/placement";
import { FENCE_SQLSTATE } from "../routing/fence";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
let worker: Worker | null = null;
const actor = systemActor("break-long-writer", "engineer@test");

beforeAll(async () => {
  control = await useControlPlane("blw_control");
  legacy = await createTestDatabase("blw_legacy");
  shards = [await createTestDatabase("blw_shard0"), await createTestDatabase("blw_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: 12, rows: 2_000, seed: 3 });
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await closeRoutingMapNotifier();
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

const cutoverEnded = (id: string) => waitForCutoverEnd(id, 60_000);

const insertEvent = (client: pg.Pool | pg.Client, tenant: string, kind: string) =>
  client.query<{ id: string }>(
    "insert into events (tenant_id, kind, payload, created_at) values ($1, $2, '{}', now()) returning id::text",
    [tenant, kind],
  );

describe("a transaction holding a tenant past the freeze budget", () => {
  it("aborts the cutover cleanly; the writer commits and its row reaches the shard", {
    timeout: 200_000,
  }, async () => {
    const plan = await planAtTwoWayCdc(
      actor,
      "break long writer",
      legacy.url,
      shards.map((s) => s.url),
    );
    await startDataMovement(actor, { planId: plan.id, reason: "go", resetShards: true });
    worker = await startWorker(control.url, {
      log: (m) => {
        if (process.env.BREAK_TEST_LOG && (m.includes("[cutover") || m.includes("[fence")))
          console.log(`${new Date().toISOString()} ${m}`);
      },
    });
    await waitForBackfill(plan.id, 120_000);
    const tenant = "5";
    const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } });
    const schema = movement.sourceSchema as unknown as SourceSchema;
    const shard = shards[hashPlacement(2).shardFor(tenant)] as TestDatabase;
    await waitFor(
      "no blocker",
      async () => (await previewCutover({ planId: plan.id, tenantKey: tenant })).blockers.length === 0,
      90_000,
    );

    // The fences are in place (a first cutover would install them, and DDL waits on the writer too).
    await installFences(actor, { planId: plan.id, reason: "fences first" });
    const ids: string[] = [];
    /** A transaction that writes the tenant on legacy and stays open while `during` runs. */
    const whileWriting = async (kind: string, during: () => Promise<void>) => {
      const long = new pg.Client({ connectionString: legacy.url });
      await long.connect();
      try {
        await long.query("begin");
        ids.push((await insertEvent(long, tenant, kind)).rows[0]?.id as string);
        await during();
        await long.query("commit");
      } finally {
        await long.end();
      }
    };
    const abortedCutover = async (error: RegExp) => {
      const { cutoverId } = await requestCutover(actor, {
        planId: plan.id,
        tenantKey: tenant,
        reason: "while a writer holds it",
        budgetMs: 1_500,
      });
      const ended = await cutoverEnded(cutoverId);
      expect(ended.status).toBe("aborted");
      expect(ended.error).toMatch(error);
      const route = await db().tenantRoute.findUnique({
        where: { planId_tenantKey: { planId: plan.id, tenantKey: tenant } },
      });
      expect(route?.ownerDatabaseId ?? null).toBeNull();
      expect(route?.frozen ?? false).toBe(false);
      // New writers of the tenant are accepted on legacy again within a few seconds (a fence
      // change that was queued behind the long writer when the attempt aborted may refuse them for
      // its own lock timeout), while the long writer is still open.
      await waitFor(
        "a new writer of the tenant to be accepted on legacy",
        () =>
          insertEvent(legacy.pool, tenant, "meanwhile").then(
            (r) => r.rowCount === 1,
            (e: { code?: string }) => {
              if (e.code !== FENCE_SQLSTATE.frozen) throw e;
              return false;
            },
          ),
        15_000,
      );
    };
    // 1. The shard's reverse slot does not exist yet: its creation waits for every transaction on
    //    the server (here legacy and the shards share one) — bounded, named, aborted unfrozen.
    await whileWriting("long", () =>
      abortedCutover(/reverse replication slot .* could not be created within .*pid \d+/),
    );
    // 2. The slot exists (made once nothing blocked it): the freeze itself waits past the budget.
    await ensureReverseSlot(shard.pool, {
      planId: plan.id,
      shardOrdinal: hashPlacement(2).shardFor(tenant),
      schema,
    });
    await whileWriting("long", () => abortedCutover(/Could not freeze tenant 5 on legacy/));

    await waitFor(
      "the long writer's row on the shard",
      async () =>
        (
          await shard.pool.query("select 1 from events where tenant_id = $1 and id = any($2::bigint[])", [
            tenant,
            ids,
          ])
        ).rowCount === 2,
    );
    await waitFor(
      "no blocker",
      async () => (await previewCutover({ planId: plan.id, tenantKey: tenant })).blockers.length === 0,
      90_000,
    );
    const again = await requestCutover(actor, {
      planId: plan.id,
      tenantKey: tenant,
      reason: "now",
      budgetMs: 5_000,
    });
    expect((await cutoverEnded(again.cutoverId)).status).toBe("done");
    const kinds = await shard.pool.query<{ kind: string }>(
      "select distinct kind from events where tenant_id = $1 and kind in ('long', 'meanwhile') order by kind",
      [tenant],
    );
    expect(kinds.rows.map((r) => r.kind)).toEqual(["long", "meanwhile"]);
  });
});
