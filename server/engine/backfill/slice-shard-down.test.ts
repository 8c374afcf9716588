// A backfill slice that cannot reach one shard fails — and must give back every connection it
// already took. It used to check out the legacy connection and the shards' in a row without a
// guard: a shard refusing connections (crashed, restarting) left the legacy connection and the
// other shards' checked out for good, six failed slices emptied the worker's legacy pool
// (6 connections), and from then on every slice waited 30 s for a connection and failed: the
// backfill stalled short of "every table copied" after a shard crash (movement.test.ts).
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { ensureDatabase } from "../../embedded/embedded-server";
import { systemActor } from "../../services/actor";
import { setBackfillRate } from "../../services/movement/movement";
import { useControlPlane } from "../../testing/control-plane";
import { type CrashableServer, startCrashableServer } from "../../testing/crashable-server";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startMovementOn } from "../../testing/movement-fixture";
import { enginePool } from "../sql/pools";
import { runBackfillSlice } from "./run-slice";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let healthy: TestDatabase;
let server: CrashableServer;
const actor = systemActor("slice-shard-down-test", "engineer@test");
const DDL =
  "create table items (tenant_id bigint not null, id bigint not null, v text, primary key (tenant_id, id))";

beforeAll(async () => {
  control = await useControlPlane("slice_down_control");
  legacy = await createTestDatabase("slice_down_legacy");
  healthy = await createTestDatabase("slice_down_healthy");
  server = await startCrashableServer("slice-down-shard", 10);
  await ensureDatabase(server.url(), "app");
  await legacy.pool.query(DDL);
  await legacy.pool.query(
    "insert into items select t, i, 'x' from generate_series(1, 50) t, generate_series(1, 40) i",
  );
  await healthy.pool.query(DDL);
  const other = new pg.Client({ connectionString: server.url("app") });
  await other.connect();
  await other.query(DDL);
  await other.end();
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await healthy?.drop();
  await server?.stop();
});

/** Connections of the worker's pool to `url` that someone holds (checked out, not idle). */
function checkedOut(url: string): number {
  const pool = enginePool(url);
  return pool.totalCount - pool.idleCount;
}

describe("a backfill slice while a shard is down", () => {
  it("gives its connections back, so the backfill resumes once the shard is up", {
    timeout: 120_000,
  }, async () => {
    // No worker runs here: this test runs the slices itself.
    const { planId } = await startMovementOn(actor, "slice-down", legacy.url, [
      healthy.url,
      server.url("app"),
    ]);
    await setBackfillRate(actor, { planId, rowsPerSecond: 50_000, reason: "copy fast" });
    const task = await db().backfillTask.findFirstOrThrow({ where: { planId } });

    await server.crash();
    for (let i = 0; i < 8; i++) {
      await expect(runBackfillSlice(task.id, 2_000)).rejects.toThrow();
    }
    expect(checkedOut(legacy.url)).toBe(0);
    expect(checkedOut(healthy.url)).toBe(0);

    await server.restart();
    // Before the fix: the legacy pool was exhausted and this waited 30 s, then failed with
    // "timeout exceeded when trying to connect".
    await runBackfillSlice(task.id, 5_000);
    const after = await db().backfillTask.findUniqueOrThrow({ where: { id: task.id } });
    expect(after.rowsCopied).toBeGreaterThan(0n);
  });
});
