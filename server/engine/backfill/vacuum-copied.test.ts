// Once a table's backfill ends, the table is VACUUMed and ANALYZEd on every shard (vacuum-copied.ts):
// without it the first autovacuum of each freshly copied table lands later, during live traffic.
// pg_stat_user_tables.last_vacuum / last_analyze are set only by a manual VACUUM / ANALYZE
// (autovacuum sets last_autovacuum / last_autoanalyze), so they show the product ran it.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { systemActor } from "../../services/actor";
import { setBackfillRate } from "../../services/movement/movement";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startMovementOn } from "../../testing/movement-fixture";
import { waitFor } from "../../testing/worker-process";
import { runBackfillSlice, settleVacuums } from "./run-slice";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
const actor = systemActor("vacuum-copied-test", "engineer@test");
const DDL =
  "create table items (tenant_id bigint not null, id bigint not null, v text, primary key (tenant_id, id))";

beforeAll(async () => {
  control = await useControlPlane("vacuum_copied_control");
  legacy = await createTestDatabase("vacuum_copied_legacy");
  shards = [await createTestDatabase("vacuum_copied_s0"), await createTestDatabase("vacuum_copied_s1")];
  await legacy.pool.query(DDL);
  await legacy.pool.query(
    "insert into items select t, i, md5(i::text) from generate_series(1, 40) t, generate_series(1, 50) i",
  );
  for (const s of shards) await s.pool.query(DDL);
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

async function manualStats(pool: pg.Pool) {
  const { rows } = await pool.query<{ vacuumed: boolean; analyzed: boolean; live: string }>(
    `select last_vacuum is not null as vacuumed, last_analyze is not null as analyzed, n_live_tup::text as live
       from pg_stat_user_tables where relid = 'public.items'::regclass`,
  );
  return rows[0];
}

describe("the end of a table's backfill", () => {
  it("VACUUMs and ANALYZEs the table on every shard", { timeout: 180_000 }, async () => {
    for (const s of shards)
      expect(await manualStats(s.pool)).toMatchObject({ vacuumed: false, analyzed: false });
    // No worker runs here: the test runs the slices itself, until the table is done.
    const { planId } = await startMovementOn(
      actor,
      "vacuum-copied",
      legacy.url,
      shards.map((s) => s.url),
    );
    await setBackfillRate(actor, { planId, rowsPerSecond: 50_000, reason: "copy fast" });
    const task = await db().backfillTask.findFirstOrThrow({ where: { planId } });
    // A session on shard 0 holds the one lock VACUUM needs that the copy does not (SHARE UPDATE
    // EXCLUSIVE; the copy's row writes take ROW EXCLUSIVE): the vacuum waits, and the slice must
    // not. It once awaited its tables' vacuums, holding its lane while the plan's other tables waited.
    const [first] = shards;
    if (!first) throw new Error("no shard");
    const holder = await first.pool.connect();
    try {
      await holder.query("begin");
      await holder.query("lock table items in share update exclusive mode");
      await waitFor(
        "the table's backfill to be done",
        async () => {
          let timer: NodeJS.Timeout | undefined;
          const heldUp = new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error("the slice did not return while its table's vacuum waited")),
              30_000,
            );
          });
          await Promise.race([runBackfillSlice(task.id, 5_000), heldUp]).finally(() => clearTimeout(timer));
          return (await db().backfillTask.findUniqueOrThrow({ where: { id: task.id } })).status === "done";
        },
        60_000,
      );
      expect(await manualStats(first.pool)).toMatchObject({ vacuumed: false });
    } finally {
      await holder.query("rollback").catch(() => {});
      holder.release();
    }
    await settleVacuums();

    for (const s of shards) {
      // Vacuum reports its statistics at once, but poll: the stats snapshot is per transaction.
      await waitFor(
        "the shard's manual vacuum and analyze to show",
        async () => {
          const stats = await manualStats(s.pool);
          return stats?.vacuumed && stats.analyzed;
        },
        15_000,
      );
      // ANALYZE counted the copied rows (the statistics the planner gets).
      expect(Number((await manualStats(s.pool))?.live)).toBeGreaterThan(0);
    }
  });
});
