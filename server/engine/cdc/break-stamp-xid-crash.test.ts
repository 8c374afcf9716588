// Adversarial (break16b): the target crashes (pg_ctl -m immediate) right after a stamped batch that
// changed nothing (its commit record exists only thanks to pg_current_xact_id()). After the restart
// the origin and the rows agree: the origin may be behind (an asynchronous commit lost), never
// ahead of the rows, and never behind what readOriginProgress reported as flushed.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDatabase } from "../../embedded/embedded-server";
import { type CrashableServer, startCrashableServer } from "../../testing/crashable-server";
import type { Statement } from "./apply";
import { readOriginProgress, TargetApplier } from "./target-applier";

let server: CrashableServer;

beforeAll(async () => {
  server = await startCrashableServer("brk-stamp-xid-crash", 37);
  await ensureDatabase(server.url(), "app");
  const admin = new pg.Client({ connectionString: server.url() });
  await admin.connect();
  // Asynchronous commits stay in the WAL buffers: a crash right after a batch really loses it.
  await admin.query("alter system set wal_writer_delay = '10s'");
  await admin.query("alter system set wal_writer_flush_after = '1GB'");
  await admin.query("select pg_reload_conf()");
  await admin.end();
  const c = new pg.Client({ connectionString: server.url("app") });
  await c.connect();
  await c.query("create table items (id bigint primary key, v text)");
  await c.end();
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

const stamp = (lsn: bigint) => ({ lsn, commitTimeIso: new Date().toISOString() });
const del = (id: number): Statement => ({
  name: "brk_xid_crash_del",
  text: "delete from items where id = $1::bigint",
  values: [String(id)],
});
const ins = (id: number): Statement => ({
  name: "brk_xid_crash_ins",
  text: "insert into items (id, v) values ($1::bigint, 'x')",
  values: [String(id)],
});

async function withPool<T>(f: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const pool = new pg.Pool({ connectionString: server.url("app") });
  pool.on("error", () => {});
  try {
    return await f(pool);
  } finally {
    await pool.end();
  }
}

describe("a crash right after a no-op stamped batch", () => {
  it("keeps the flushed origin, and never an origin ahead of the rows", async () => {
    const origin = "shardshift_brk_xid_crash_t0";
    for (const [round, flushed] of [
      [0, true],
      [1, false],
      [2, false],
    ] as const) {
      const base = BigInt(round + 1) * 0x1000n;
      const target = await TargetApplier.open({ url: server.url("app"), ordinal: 0, origin });
      target.onLost(() => {});
      const before = target.appliedUpTo;
      // Fallback, then one message: rows, then a no-op (a replayed delete of a row never there).
      await target.apply([ins(round * 10 + 1)], stamp(base + 0x10n));
      await target.apply([ins(round * 10 + 2)], stamp(base + 0x20n));
      let reported = before;
      // Round 2: the rows flushed, only the no-op's commit at risk.
      if (round === 2) reported = await withPool((p) => readOriginProgress(p, origin));
      if (round === 2) expect(reported).toBe(base + 0x20n);
      await target.apply([del(-1)], stamp(base + 0x30n));
      if (flushed) reported = await withPool((p) => readOriginProgress(p, origin));
      if (flushed) expect(reported).toBe(base + 0x30n);
      await server.crash();
      await target.close();
      await server.restart();
      const [after, rows] = await withPool(async (p) => [
        await readOriginProgress(p, origin),
        (
          await p.query("select id from items where id = any($1::bigint[]) order by id", [
            [round * 10 + 1, round * 10 + 2],
          ])
        ).rows.map((r) => Number(r.id)),
      ]);
      expect(after).toBeGreaterThanOrEqual(reported);
      expect(after).toBeLessThanOrEqual(base + 0x30n);
      // Origin ahead of rows is the defect: a position past a batch means its rows are there.
      if (after >= base + 0x10n) expect(rows).toContain(round * 10 + 1);
      if (after >= base + 0x20n) expect(rows).toContain(round * 10 + 2);
      // Rows without the origin are also a defect (replayed: duplicate key).
      if (rows.includes(round * 10 + 2)) expect(after).toBeGreaterThanOrEqual(base + 0x20n);
      if (rows.includes(round * 10 + 1)) expect(after).toBeGreaterThanOrEqual(base + 0x10n);
      // The session after the restart applies and stamps (replays what was lost).
      const again = await TargetApplier.open({ url: server.url("app"), ordinal: 0, origin });
      try {
        expect(again.appliedUpTo).toBe(after);
        if (after < base + 0x10n) await again.apply([ins(round * 10 + 1)], stamp(base + 0x10n));
        if (after < base + 0x20n) await again.apply([ins(round * 10 + 2)], stamp(base + 0x20n));
        if (after < base + 0x30n) await again.apply([del(-1)], stamp(base + 0x30n));
        expect(await withPool((p) => readOriginProgress(p, origin))).toBe(base + 0x30n);
      } finally {
        await again.close();
      }
    }
  }, 120_000);
});
