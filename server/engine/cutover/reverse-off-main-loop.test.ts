// The supervisor's reverse streams run in a CDC thread of their own (isolated-runner.ts), not on
// the worker's main event loop: a shard's write reaches legacy while that loop is blocked by a long
// synchronous task (what a parity hash, a large JSON parse or Prisma's result mapping do to it). On
// the main loop the write waited for the block to end — the reverse lag's tail in the bench.
import { afterAll, beforeAll, expect, it } from "vitest";
import { db } from "../../db";
import { systemActor } from "../../services/actor";
import { changeTenantRoutes, installFences } from "../../services/routing/routing";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startMovementOn, waitForBackfill, waitForCatchUp } from "../../testing/movement-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";
import { reverseSlotName } from "../cdc/reverse-slot";
import { dropSlotOrigins } from "../cdc/target-applier";
import { loadMovementContext } from "../store/movement-context";
import { ensureReverseSlot } from "./cdc-links";

const BLOCK_MS = 4_000;
const actor = systemActor("reverse-loop-test", "engineer@test");
let control: Awaited<ReturnType<typeof useControlPlane>>;
let worker: Worker | null = null;
let legacy: TestDatabase;
let shard: TestDatabase;
let planId: string | null = null;
let slotName: string | null = null;

const DDL = `create table accounts (tenant_id bigint not null, id bigint not null, name text, primary key (tenant_id, id));`;

/** On legacy: when each applied row became visible (ENABLE ALWAYS: the apply session runs as a replica). */
const ARRIVALS = `
  create table arrivals (id bigint primary key, arrived_at timestamptz not null);
  create function record_arrival() returns trigger language plpgsql as $$
  begin
    insert into arrivals values (new.id, clock_timestamp()) on conflict do nothing;
    return null;
  end $$;
  create trigger record_arrival after insert on public.accounts for each row execute function record_arrival();
  alter table public.accounts enable always trigger record_arrival;`;

beforeAll(async () => {
  control = await useControlPlane("rev_loop_control");
  worker = await startWorker(control.url, { log: () => {} });
  legacy = await createTestDatabase("rev_loop_legacy");
  shard = await createTestDatabase("rev_loop_shard");
  await legacy.pool.query(DDL);
  await shard.pool.query(DDL);
  await legacy.pool.query(
    "insert into accounts select t, i, 'initial' from generate_series(1, 3) t, generate_series(1, 3) i",
  );
});

afterAll(async () => {
  await worker?.stop();
  if (planId && slotName) {
    await dropSlotOrigins(legacy.pool, reverseSlotName(planId, 0)).catch(() => {});
    await dropSlotOrigins(shard.pool, slotName).catch(() => {});
  }
  await legacy?.drop();
  await shard?.drop();
  await control?.drop();
});

it("carries a shard's write to legacy while the worker's main event loop is blocked", {
  timeout: 240_000,
}, async () => {
  const started = await startMovementOn(actor, "reverse-loop", legacy.url, [shard.url]);
  planId = started.planId;
  slotName = started.slotName;
  await waitForBackfill(planId);
  await waitForCatchUp(legacy.pool, slotName);
  await legacy.pool.query(ARRIVALS);

  // Tenant 1 to the shard by the map, as a cutover's flip leaves it: fences installed and the
  // shard's reverse slot made first (a cutover's precheck does both).
  await installFences(actor, { planId, reason: "test" });
  const ctx = await loadMovementContext(planId);
  await ensureReverseSlot(ctx.shards[0] as NonNullable<(typeof ctx.shards)[0]>, {
    planId,
    shardOrdinal: 0,
    schema: ctx.schema,
  });
  const { databaseId } = await db().planShard.findFirstOrThrow({ where: { planId, ordinal: 0 } });
  await changeTenantRoutes(actor, {
    planId,
    changes: [{ tenantKey: "1", owner: databaseId, frozen: false }],
    reason: "test: tenant 1 to the shard",
  });

  // The supervisor starts the shard's reverse stream; a first write shows it carries tenant 1.
  await shard.pool.query("insert into accounts values (1, 100, 'warm-up')");
  await waitFor("the reverse stream to carry tenant 1 to legacy", async () => {
    const { rows } = await legacy.pool.query("select 1 from arrivals where id = 100");
    return rows.length > 0;
  });

  await shard.pool.query("insert into accounts values (1, 101, 'during the block')");
  const blockedAt = Date.now();
  while (Date.now() - blockedAt < BLOCK_MS) {}
  const { rows } = await legacy.pool.query<{ at: Date }>(
    "select arrived_at as at from arrivals where id = 101",
  );
  const arrivedAt = rows[0]?.at.getTime() ?? null;
  // Arrived while the loop was blocked (a thread applies it in milliseconds; half the block is slack
  // for a loaded machine).
  expect(arrivedAt).not.toBeNull();
  expect((arrivedAt ?? 0) - blockedAt).toBeLessThan(BLOCK_MS / 2);
});
