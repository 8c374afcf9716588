// A worker stopping waits for its copied tables' vacuums (run-slice.ts), which run on the engine's
// pools before those close. A vacuum waiting for a lock on a shard (a session there holding SHARE
// UPDATE EXCLUSIVE: an index build, someone's ANALYZE, a long LOCK) waited as long as the holder,
// and the worker's stop with it: a SIGTERM never ended the process. The stop gives the vacuums a
// few seconds, then cancels the one running and skips those queued, each left to autovacuum with
// a warning.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { systemActor } from "../../services/actor";
import { setBackfillRate } from "../../services/movement/movement";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startMovementOn } from "../../testing/movement-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker } from "../../worker";
import { runBackfillSlice } from "./run-slice";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
const actor = systemActor("break-vacuum-stop", "engineer@test");
const TABLES = ["items", "notes"];
const ddl = (table: string) =>
  `create table ${table} (tenant_id bigint not null, id bigint not null, v text, primary key (tenant_id, id))`;

beforeAll(async () => {
  control = await useControlPlane("vacuum_stop_control");
  legacy = await createTestDatabase("vacuum_stop_legacy");
  shards = [await createTestDatabase("vacuum_stop_s0"), await createTestDatabase("vacuum_stop_s1")];
  for (const table of TABLES) {
    await legacy.pool.query(ddl(table));
    await legacy.pool.query(
      `insert into ${table} select t, i, md5(i::text) from generate_series(1, 20) t, generate_series(1, 20) i`,
    );
    for (const s of shards) await s.pool.query(ddl(table));
  }
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

const waitingVacuums = async (pool: TestDatabase["pool"]) =>
  (
    await pool.query<{ n: number }>(
      `select count(*)::int as n from pg_stat_activity
        where datname = current_database() and query like 'vacuum%' and wait_event_type = 'Lock'`,
    )
  ).rows[0]?.n ?? 0;

describe("a worker stopping while a copied table's vacuum waits for a lock on a shard", () => {
  it("stops within its bound; the vacuums not done are left to autovacuum, with a warning", {
    timeout: 180_000,
  }, async () => {
    const { planId } = await startMovementOn(
      actor,
      "vacuum-stop",
      legacy.url,
      shards.map((s) => s.url),
    );
    await setBackfillRate(actor, { planId, rowsPerSecond: 50_000, reason: "copy fast" });
    const [first] = shards;
    if (!first) throw new Error("no shard");
    const holder = await first.pool.connect();
    try {
      await holder.query("begin");
      await holder.query("lock table items in share update exclusive mode");
      // The test copies both tables itself (no worker yet): items' vacuum then waits for the holder,
      // and notes' is queued behind it.
      await waitFor(
        "both tables' backfills to be done",
        async () => {
          const open = await db().backfillTask.findMany({ where: { planId, status: { not: "done" } } });
          for (const task of open) await runBackfillSlice(task.id, 5_000);
          return open.length === 0;
        },
        60_000,
      );
      await waitFor("items' vacuum to wait for the lock", async () => (await waitingVacuums(first.pool)) > 0);

      const worker = await startWorker(control.url, { log: () => {}, autoTrip: false });
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error("worker.stop() did not return in 60 s: it waited for a vacuum blocked by a lock"),
            ),
          60_000,
        );
      });
      await Promise.race([worker.stop(), bound]).finally(() => clearTimeout(timer));

      // Cancelled on the shard, not left waiting there (its lock request would queue others).
      await waitFor(
        "no vacuum to wait on shard 0",
        async () => (await waitingVacuums(first.pool)) === 0,
        15_000,
      );
      const warnings = await db().engineEvent.findMany({
        where: { planId, level: "warn", source: "backfill", message: { contains: "VACUUM" } },
      });
      for (const table of TABLES) {
        expect(warnings.some((w) => w.message.includes(table) && w.message.includes("autovacuum"))).toBe(
          true,
        );
      }
    } finally {
      await holder.query("rollback").catch(() => {});
      holder.release();
    }
  });
});
