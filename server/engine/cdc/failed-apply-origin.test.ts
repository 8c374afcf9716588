// Data loss found by the movement test with a shard crash (issue 11): PostgreSQL advances a
// session's replication origin when a transaction stamped with pg_replication_origin_xact_setup
// ROLLS BACK, not only when it commits (the abort record carries the origin; crash recovery replays
// it). The apply used to stamp its transaction first: a transaction that then failed — a statement
// error, or the engine killed mid-transaction so the server rolled it back — left the origin past
// source transactions the shard never held. The next runner read that origin (flushed, from a fresh
// session), skipped them, and they were gone for good; a crash of the shard keeps the wrong origin.
//
// Here, on a real server that is crashed (`pg_ctl -m immediate`) and started again:
//   - a committed batch (stamp 0/100) and then a batch (stamp 0/200) whose statement fails;
//   - a batch (stamp 0/300) in the sequential path whose engine dies mid-transaction (its socket
//     destroyed while it reads legacy for a partial update, as a kill -9 of the worker does);
// after each, and after the crash, the origin must still say 0/100: the next runner re-applies the
// failed batches. Fails without the fix (the origin says 0/200, then 0/300).
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDatabase } from "../../embedded/embedded-server";
import { type CrashableServer, startCrashableServer } from "../../testing/crashable-server";
import type { Statement } from "./apply";
import { readOriginProgress, TargetApplier } from "./target-applier";

let server: CrashableServer;
let pool: pg.Pool;

beforeAll(async () => {
  server = await startCrashableServer("failed-apply-origin", 14);
  await ensureDatabase(server.url(), "app");
  pool = new pg.Pool({ connectionString: server.url("app") });
  pool.on("error", () => {});
  await pool.query("create table items (id bigint primary key, v text not null)");
});

afterAll(async () => {
  await pool?.end();
  await server?.stop();
});

const insert = (id: number, v: string | null): Statement => ({
  text: "insert into items (id, v) values ($1, $2)",
  values: [String(id), v],
});
const stamp = (lsn: bigint) => ({ lsn, commitTimeIso: new Date().toISOString() });
const open = (origin: string) => TargetApplier.open({ url: server.url("app"), ordinal: 0, origin });

describe("a stamped apply transaction that fails", () => {
  it("leaves the target's origin where its last commit put it (a statement fails)", {
    timeout: 60_000,
  }, async () => {
    const origin = "shardshift_failed_apply_test_statement_t0";
    const target = await open(origin);
    expect(await target.apply([insert(1, "a")], stamp(0x100n))).toBe(true);
    // v is not null: nothing of the batch committed.
    await expect(target.apply([insert(2, "b"), insert(3, null)], stamp(0x200n))).rejects.toThrow(/null/);
    expect(await readOriginProgress(pool, origin)).toBe(0x100n);
    await target.close();
  });

  it("leaves the target's origin where its last commit put it (the engine dies mid-transaction), also across a crash of the target", {
    timeout: 120_000,
  }, async () => {
    const origin = "shardshift_failed_apply_test_killed_t0";
    const target = await open(origin);
    expect(await target.apply([insert(11, "a")], stamp(0x100n))).toBe(true);
    // Sequential path: a partial update whose row the shard lacks reads legacy; the worker is
    // killed meanwhile (its socket destroyed) and the server rolls the transaction back.
    const pid = (await target.connection.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0]
      ?.pid;
    const socket = (target.connection as unknown as { connection: { stream: { destroy(): void } } })
      .connection.stream;
    const partial: Statement = {
      text: "update items set v = $2 where id = $1",
      values: ["14", "d"],
      reread: { select: { text: "select 1", values: [] }, upsert: () => insert(14, "d") },
    };
    await expect(
      target.apply([insert(15, "e"), partial], stamp(0x300n), {
        readLegacy: async () => {
          socket.destroy();
          return null;
        },
      }),
    ).rejects.toThrow();
    await target.close();
    // The server notices the lost client and rolls the transaction back; wait until that session ended.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { rows } = await pool.query<{ n: number }>(
        "select count(*)::int as n from pg_stat_activity where pid = $1",
        [pid],
      );
      if ((rows[0]?.n ?? 0) === 0) break;
      if (Date.now() > deadline) throw new Error("the dead engine's session never ended");
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await readOriginProgress(pool, origin)).toBe(0x100n);

    // The shard crashes and recovers (replaying the abort's record): the origin still says 0/100.
    await pool.end();
    await server.crash();
    await server.restart();
    pool = new pg.Pool({ connectionString: server.url("app") });
    pool.on("error", () => {});
    const next = await open(origin);
    expect(next.appliedUpTo).toBe(0x100n);
    await next.close();
    const { rows } = await pool.query("select id from items where id > 10 order by id");
    expect(rows.map((r) => Number(r.id))).toEqual([11]);
  });
});
