// A checked-out pool client has no 'error' listener of the pool's. A session the server ends while
// the engine holds it (pg_terminate_backend, a restart) — idle between two statements or waiting in
// one — makes the client emit 'error' once its socket closes; unheard, that is an uncaught exception
// that ends the worker process. Each case here ends the session at the moment the engine holds it
// and asserts: no uncaught exception (also reported by vitest as an unhandled error), the operation
// fails with an error, and it succeeds when run again on a fresh connection.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { systemActor } from "../../services/actor";
import { startDataMovement } from "../../services/movement/movement";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { waitFor } from "../../testing/worker-process";
import type { SourceSchema } from "../analysis/introspect";
import { runTenantCensus } from "../backfill/tenant-census";
import { ensureReverseSlot, reverseSlotName } from "../cdc/reverse-slot";
import { checkOut, closeEnginePools, connectionLost, enginePool } from "./pools";

const REVERSE_SLOT_LOCK_CLASS = 7_363_601;

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
const actor = systemActor("conn-errors-test", "engineer@test");

beforeAll(async () => {
  control = await useControlPlane("ce_control");
  legacy = await createTestDatabase("ce_legacy");
  shards = [await createTestDatabase("ce_shard0"), await createTestDatabase("ce_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: 40, rows: 2_000, seed: 5 });
}, 120_000);

afterAll(async () => {
  await closeEnginePools();
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

/** Collects uncaught exceptions while `fn` runs (vitest reports them too, failing the file). */
async function watchUncaught(fn: () => Promise<void>): Promise<string[]> {
  const uncaught: string[] = [];
  const onUncaught = (error: Error) => uncaught.push(error.message);
  process.on("uncaughtException", onUncaught);
  try {
    await fn();
    // The socket's close is heard on a later turn of the loop than the query's failure.
    await new Promise((r) => setTimeout(r, 300));
  } finally {
    process.off("uncaughtException", onUncaught);
  }
  return uncaught;
}

async function backendGone(pool: pg.Pool, pids: number[]): Promise<boolean> {
  const { rows } = await pool.query<{ n: number }>(
    "select count(*)::int as n from pg_stat_activity where pid = any($1::int[])",
    [pids],
  );
  return rows[0]?.n === 0;
}

describe("sessions the server ends while the engine holds them", () => {
  it("the tenant census: legacy's connection ended while it writes a table's counts", {
    timeout: 120_000,
  }, async () => {
    const plan = await planAtTwoWayCdc(
      actor,
      "census-kill",
      legacy.url,
      shards.map((s) => s.url),
    );
    await startDataMovement(actor, { planId: plan.id, reason: "go" });
    // The census's write of its first table waits on this lock: its legacy connection sits idle.
    const blocker = new pg.Client({ connectionString: control.url });
    blocker.on("error", () => {});
    await blocker.connect();
    let census: Promise<void> | null = null;
    const uncaught = await watchUncaught(async () => {
      try {
        await blocker.query("begin; lock table tenant_census in share mode");
        census = runTenantCensus(plan.id);
        census.catch(() => {});
        await waitFor(
          "the census's write to wait for the lock",
          async () => {
            const { rows } = await control.pool.query<{ n: number }>(
              "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
            );
            return (rows[0]?.n ?? 0) > 0;
          },
          20_000,
        );
        const { rows: killed } = await legacy.pool.query<{ pid: number }>(
          `select pid from pg_stat_activity
            where datname = current_database() and application_name = 'shardshift-engine'`,
        );
        await legacy.pool.query("select pg_terminate_backend(pid) from unnest($1::int[]) as pid", [
          killed.map((k) => k.pid),
        ]);
        expect(killed.length).toBeGreaterThan(0);
        await waitFor(
          "the census's legacy session to end",
          () =>
            backendGone(
              legacy.pool,
              killed.map((k) => k.pid),
            ),
          10_000,
        );
        // Its socket's close reaches the client while the census still holds it idle.
        await new Promise((r) => setTimeout(r, 300));
        await blocker.query("rollback");
        await expect(census).rejects.toThrow();
      } finally {
        await blocker.end().catch(() => {});
      }
    });
    expect(uncaught).toEqual([]);
    // Run again (as the supervisor does), it counts on a fresh connection.
    await runTenantCensus(plan.id);
    const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } });
    expect(movement.censusAt).not.toBeNull();
  });

  it("any client checked out of an engine pool, held idle while its session is ended", {
    timeout: 30_000,
  }, async () => {
    const shard = shards[1] as TestDatabase;
    const pool = enginePool(shard.url, 2, "ce-idle");
    const uncaught = await watchUncaught(async () => {
      // Checked out the plain way (as the engine's older call sites did), not through checkOut.
      const client = await pool.connect();
      const { rows } = await client.query<{ pid: number }>("select pg_backend_pid() as pid");
      const pid = rows[0]?.pid as number;
      await shard.pool.query("select pg_terminate_backend($1)", [pid]);
      await waitFor("the session to end", () => backendGone(shard.pool, [pid]), 10_000);
      await waitFor(
        "the client's socket to close",
        async () =>
          (client as unknown as { connection?: { stream?: { destroyed?: boolean } } }).connection?.stream
            ?.destroyed === true,
        10_000,
      );
      expect(connectionLost(client)).toBeInstanceOf(Error);
      await expect(client.query("select 1")).rejects.toThrow();
      client.release();
      // The broken client is not given back: the next checkout is a working session.
      const fresh = await checkOut(pool);
      try {
        expect((await fresh.query<{ one: number }>("select 1 as one")).rows[0]?.one).toBe(1);
      } finally {
        fresh.release();
      }
    });
    expect(uncaught).toEqual([]);
  });

  // Here the session's end reaches the client after the failed statement let it go back to the
  // pool (whose listener hears it): this passed before the guard too, and guards the path.
  it("a reverse slot's ensure: the shard's connection ended while it waits for the slot's lock", {
    timeout: 60_000,
  }, async () => {
    const shard = shards[0] as TestDatabase;
    const pool = new pg.Pool({ connectionString: shard.url, max: 2, application_name: "ce-reverse" });
    pool.on("error", () => {});
    const planId = "00000000-0000-4000-8000-00000000ce01";
    const slot = reverseSlotName(planId, 0);
    const holder = new pg.Client({ connectionString: shard.url });
    holder.on("error", () => {});
    await holder.connect();
    try {
      await holder.query("select pg_advisory_lock($1, hashtext($2))", [REVERSE_SLOT_LOCK_CLASS, slot]);
      const uncaught = await watchUncaught(async () => {
        const ensure = ensureReverseSlot(pool, {
          planId,
          shardOrdinal: 0,
          schema: { tables: [] } as unknown as SourceSchema,
        });
        ensure.catch(() => {});
        const { pid } = await waitFor(
          "the ensure to wait for the slot's lock",
          async () => {
            const { rows } = await shard.pool.query<{ pid: number }>(
              "select pid from pg_stat_activity where application_name = 'ce-reverse' and wait_event_type = 'Lock'",
            );
            return rows[0];
          },
          20_000,
        );
        await shard.pool.query("select pg_terminate_backend($1)", [pid]);
        await expect(ensure).rejects.toThrow();
      });
      expect(uncaught).toEqual([]);
    } finally {
      await holder.end().catch(() => {});
      await pool.end().catch(() => {});
    }
  });
});
