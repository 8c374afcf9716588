// The interleaving behind movement.test.ts's rare failure with a shard crash (issue 11: rows of
// cascade-deleted invoices left on the shard that did NOT crash), built step by step on real
// servers with the real CDC runner, so every hypothesis is tried deterministically:
//   (a) a cascade's child deletes reach the shard (keyed by the replica identity) BEFORE a chunk
//       that still holds those children lands: the guard must remember the deletes;
//   (b) the chunk fails on the crashed shard after it landed on the healthy one, and the retry
//       re-copies it later with a newer snapshot (which prunes the guard entries);
//   (c) the deleting transaction spans both shards, and the crashed shard's part is lost with
//       its asynchronous commit and replayed after the restart;
//   (d) the retried copy, the replay and the guard's pruning run while CDC keeps applying.
// Then every row must be equal on legacy and the shards.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { ensureDatabase } from "../../embedded/embedded-server";
import { systemActor } from "../../services/actor";
import { setBackfillRate } from "../../services/movement/movement";
import { compareShards } from "../../testing/compare-shards";
import { useControlPlane } from "../../testing/control-plane";
import { type CrashableServer, startCrashableServer } from "../../testing/crashable-server";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startMovementOn, waitForBackfill, waitForCatchUp } from "../../testing/movement-fixture";
import { waitFor } from "../../testing/worker-process";
import type { CdcRunner } from "../cdc/cdc-runner";
import { startForwardCdc } from "../cdc/forward-cdc";
import { TOUCHED_TABLE } from "../shared/snapshot-guard";
import { planTable } from "../shared/table-plan";
import { loadMovementContext } from "../store/movement-context";
import { readChunk, writeChunk } from "./copy-chunk";
import { runBackfillSlice } from "./run-slice";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let healthy: TestDatabase;
let server: CrashableServer;
let crashed: pg.Pool;
const actor = systemActor("cascade-crash-test", "engineer@test");
const DDL = `
create table invoices (tenant_id bigint not null, id bigint not null, v text, primary key (tenant_id, id));
create table invoice_lines (
  tenant_id bigint not null, invoice_id bigint not null, line_no int not null, d text,
  primary key (tenant_id, invoice_id, line_no),
  foreign key (tenant_id, invoice_id) references invoices (tenant_id, id) on delete cascade)`;

beforeAll(async () => {
  control = await useControlPlane("cascade_crash_control");
  legacy = await createTestDatabase("cascade_crash_legacy");
  healthy = await createTestDatabase("cascade_crash_healthy");
  server = await startCrashableServer("cascade-crash-shard", 14);
  await ensureDatabase(server.url(), "app");
  // Asynchronous commits stay unflushed for up to 10 s, so the crash really loses the last ones.
  const admin = new pg.Client({ connectionString: server.url() });
  await admin.connect();
  await admin.query("alter system set wal_writer_delay = '10s'");
  await admin.query("alter system set wal_writer_flush_after = '1GB'");
  await admin.query("select pg_reload_conf()");
  await admin.end();
  crashed = new pg.Pool({ connectionString: server.url("app") });
  crashed.on("error", () => {});
  for (const p of [legacy.pool, healthy.pool, crashed]) await p.query(DDL);
  await legacy.pool.query(
    "insert into invoices select t, i, 'inv' from generate_series(1, 30) t, generate_series(1, 4) i",
  );
  await legacy.pool.query(
    "insert into invoice_lines select t, i, l, 'line' from generate_series(1, 30) t, generate_series(1, 4) i, generate_series(1, 3) l",
  );
});

afterAll(async () => {
  stopCdc = true;
  await runner?.stop();
  await loop;
  await control?.drop();
  await legacy?.drop();
  await healthy?.drop();
  await crashed?.end();
  await server?.stop();
});

// The CDC runner in this process, started again whenever it ends (as the supervisor does).
let runner: CdcRunner | undefined;
let stopCdc = false;
let loop: Promise<void> = Promise.resolve();
function superviseCdc(planId: string) {
  loop = (async () => {
    while (!stopCdc) {
      runner = startForwardCdc(planId, { log: () => {} });
      await runner.ended;
      // A restart delay (a shard may still be down), not a wait for state.
      if (!stopCdc) await new Promise((r) => setTimeout(r, 250));
    }
  })();
}

const touchedLines = async (pool: pg.Pool) =>
  (
    await pool.query<{ n: number }>(`select count(*)::int as n from ${TOUCHED_TABLE} where rel = $1`, [
      '"public"."invoice_lines"',
    ])
  ).rows[0]?.n ?? 0;

describe("a cascade delete of rows in a chunk in flight, while the other shard crashes", () => {
  it("leaves no child row of a deleted parent on either shard", { timeout: 240_000 }, async () => {
    const { planId, slotName } = await startMovementOn(actor, "cascade-crash", legacy.url, [
      healthy.url,
      server.url("app"),
    ]);
    await setBackfillRate(actor, { planId, rowsPerSecond: 50_000, reason: "copy fast" });
    const ctx = await loadMovementContext(planId);
    const table = ctx.schema.tables.find((t) => t.name === "invoice_lines");
    if (!table) throw new Error("no invoice_lines in the movement's schema");
    const plan = planTable(table, "tenant_id");
    const tenantOn = (shard: number) =>
      Array.from({ length: 30 }, (_, i) => i + 1).find((t) => ctx.placement.shardFor(String(t)) === shard);
    const [t0, t1] = [tenantOn(0), tenantOn(1)];
    if (t0 === undefined || t1 === undefined) throw new Error("no tenant for one of the shards");

    superviseCdc(planId);
    await waitForCatchUp(legacy.pool, slotName);

    // The chunk is read: its snapshot still holds both invoices' lines.
    const source = await legacy.pool.connect();
    const targets = [await healthy.pool.connect(), await crashed.connect()];
    targets[1]?.on("error", () => {});
    try {
      const chunk = await readChunk(source, 2, ctx.placement, plan, null, 10_000);
      expect(chunk.rows).toBe(30 * 4 * 3);

      // One legacy transaction deletes an invoice of each shard; the lines go by the cascade. CDC
      // applies it to both shards (and records the deleted keys) before the chunk lands.
      await legacy.pool.query(
        "delete from invoices where (tenant_id, id) in (($1, 2), ($2, 3))",
        [t0, t1].map(String),
      );
      await waitFor("CDC to apply the cascade on both shards", async () => {
        return (await touchedLines(healthy.pool)) >= 3 && (await touchedLines(crashed)) >= 3;
      });

      // The other shard's server dies: the chunk lands on the healthy shard and fails on it.
      await server.crash();
      await expect(writeChunk(targets, plan, chunk, "range")).rejects.toThrow();
    } finally {
      source.release();
      targets[0]?.release();
      targets[1]?.release(true);
    }
    const linesOf = async (pool: pg.Pool, tenant: number, invoice: number) =>
      (
        await pool.query<{ n: number }>(
          "select count(*)::int as n from invoice_lines where tenant_id = $1 and invoice_id = $2",
          [tenant, invoice],
        )
      ).rows[0]?.n;
    // The guard remembered the deletes: the chunk skipped the deleted invoice's lines.
    expect(await linesOf(healthy.pool, t0, 2)).toBe(0);
    expect(await linesOf(healthy.pool, t0, 1)).toBe(3);

    // Back up: CDC replays what the crash lost, the backfill redoes every table from its checkpoint.
    await server.restart();
    const tasks = await db().backfillTask.findMany({ where: { planId } });
    for (const task of tasks) {
      await waitFor(`${task.tableName} copied`, async () => {
        await runBackfillSlice(task.id, 5_000).catch(() => {});
        return (await db().backfillTask.findUniqueOrThrow({ where: { id: task.id } })).status === "done";
      });
    }
    await waitForBackfill(planId);
    await legacy.pool.query("delete from invoices where tenant_id = $1 and id = 4", [String(t0)]);
    await waitForCatchUp(legacy.pool, slotName);

    const differences = await compareShards(legacy.pool, [healthy.pool, crashed], ctx.schema, ctx.placement);
    expect(differences).toEqual([]);
  });
});
