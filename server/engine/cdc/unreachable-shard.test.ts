// One shard unreachable: the stream keeps restarting (and says why), but it does not leak
// sessions on the healthy shards — each restart used to leave one apply connection open there,
// about one a second — and cancelling the movement still completes.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { ensureDatabase } from "../../embedded/embedded-server";
import { systemActor } from "../../services/actor";
import { controlDataMovement } from "../../services/movement/movement";
import { useControlPlane } from "../../testing/control-plane";
import { type CrashableServer, startCrashableServer } from "../../testing/crashable-server";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startMovementOn, waitForBackfill, waitForCatchUp } from "../../testing/movement-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let healthy: TestDatabase;
let server: CrashableServer;
let worker: Worker;
const actor = systemActor("unreachable-test", "engineer@test");
const DDL =
  "create table items (tenant_id bigint not null, id bigint not null, v text, primary key (tenant_id, id))";

beforeAll(async () => {
  control = await useControlPlane("unreach_control");
  legacy = await createTestDatabase("unreach_legacy");
  healthy = await createTestDatabase("unreach_healthy");
  server = await startCrashableServer("unreachable-shard", 1);
  await ensureDatabase(server.url(), "app");
  await legacy.pool.query(DDL);
  await legacy.pool.query("insert into items select t, 1, 'x' from generate_series(1, 40) t");
  await healthy.pool.query(DDL);
  const other = new pg.Client({ connectionString: server.url("app") });
  await other.connect();
  await other.query(DDL);
  await other.end();
  worker = await startWorker(control.url, { log: () => {} });
});

afterAll(async () => {
  await worker?.stop();
  await control?.drop();
  await legacy?.drop();
  await healthy?.drop();
  await server?.stop();
});

async function engineSessionsOnHealthy(): Promise<number> {
  const { rows } = await healthy.pool.query<{ n: number }>(
    "select count(*)::int as n from pg_stat_activity where datname = current_database() and application_name like 'shardshift%'",
  );
  return rows[0]?.n ?? 0;
}

describe("one shard unreachable", () => {
  it("leaks no sessions on the healthy shard, and cancel completes", { timeout: 180_000 }, async () => {
    const { planId, slotName } = await startMovementOn(actor, "unreachable", legacy.url, [
      healthy.url,
      server.url("app"),
    ]);
    await waitForBackfill(planId);
    await waitForCatchUp(legacy.pool, slotName);

    await server.crash();
    // Writes keep coming: every stream restart tries both shards again.
    await legacy.pool.query("insert into items select t, 2, 'y' from generate_series(1, 40) t");
    await new Promise((r) => setTimeout(r, 3_000));
    const before = await engineSessionsOnHealthy();
    await new Promise((r) => setTimeout(r, 10_000));
    const after = await engineSessionsOnHealthy();
    expect(after - before).toBeLessThanOrEqual(1);

    await controlDataMovement(actor, { planId, action: "cancel", reason: "shard gone" });
    await waitFor(
      "the cancel to complete",
      async () => (await db().dataMovement.findUnique({ where: { planId } }))?.status === "cancelled",
      60_000,
    );
  });

  it("a hung shard (accepts, never answers) does not hang cancel", { timeout: 240_000 }, async () => {
    await server.restart();
    const { planId, slotName } = await startMovementOn(actor, "hung", legacy.url, [
      healthy.url,
      server.url("app"),
    ]);
    await waitForBackfill(planId);
    await waitForCatchUp(legacy.pool, slotName);
    await server.freeze(true);
    try {
      await legacy.pool.query("insert into items select t, 3, 'z' from generate_series(1, 40) t");
      await new Promise((r) => setTimeout(r, 3_000));
      await controlDataMovement(actor, { planId, action: "cancel", reason: "shard hung" });
      await waitFor(
        "the cancel to complete",
        async () => (await db().dataMovement.findUnique({ where: { planId } }))?.status === "cancelled",
        120_000,
      );
    } finally {
      await server.freeze(false);
    }
  });
});
