// Adversarial (brk17): a target crashes (pg_ctl -m immediate, asynchronous commits held in the WAL
// buffers for 10 s) while its lane coalesces a stream of small batches and the confirmer checks
// every 20 ms. The slot must never be confirmed past what survived on every target: every row of a
// confirmed batch is on both targets after the restart. Held (no defect found): the confirmer reads
// the origin with flush = true, which writes the target's WAL out up to its last stamped commit.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDatabase } from "../../embedded/embedded-server";
import { type CrashableServer, startCrashableServer } from "../../testing/crashable-server";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import type { Statement } from "./apply";
import type { ChangeRouter } from "./change-router";
import { Confirmer } from "./confirmer";
import { runReplication } from "./replication-loop";
import type { SourceBatch, SourceTransaction, StreamReader } from "./stream-reader";
import { readOriginProgress, TargetApplier, TargetAppliers } from "./target-applier";

let server: CrashableServer;
let crashPool: pg.Pool;
let other: TestDatabase;

beforeAll(async () => {
  server = await startCrashableServer("brk-lanes-crash-confirm", 46);
  await ensureDatabase(server.url(), "app");
  const admin = new pg.Client({ connectionString: server.url() });
  await admin.connect();
  await admin.query("alter system set wal_writer_delay = '10s'");
  await admin.query("alter system set wal_writer_flush_after = '1GB'");
  await admin.query("select pg_reload_conf()");
  await admin.end();
  crashPool = new pg.Pool({ connectionString: server.url("app") });
  crashPool.on("error", () => {});
  await crashPool.query("create table items (id bigint primary key, v text)");
  other = await createTestDatabase("brk_lanes_crash_t1");
  await other.pool.query("create table items (id bigint primary key, v text)");
}, 120_000);

afterAll(async () => {
  await crashPool?.end();
  await other?.drop();
  await server?.stop();
});

const put = (id: number): Statement => ({
  name: "brk_lanes_crash_put",
  text: "insert into items (id, v) values ($1::bigint, 'x')",
  values: [String(id)],
});

describe("a target crash while its lane coalesces batches", () => {
  it("never leaves the slot confirmed past what survived", async () => {
    const origins = ["shardshift_brk_lanes_crash_t0", "shardshift_brk_lanes_crash_t1"];
    const urls = [server.url("app"), other.url];
    const appliers = new TargetAppliers(
      await Promise.all(
        urls.map((url, i) => TargetApplier.open({ url, ordinal: i, origin: origins[i] as string })),
      ),
    );
    const pools = [crashPool, other.pool];
    const confirmed: bigint[] = [];
    const confirmer = new Confirmer({
      durableOf: (t) => readOriginProgress(pools[t] as pg.Pool, origins[t] as string),
      confirm: (lsn) => confirmed.push(lsn),
      periodMs: 20,
      log: () => {},
    });
    let n = 0;
    let stopped = false;
    const reader = {
      async next(): Promise<SourceBatch | null> {
        if (stopped) return null;
        await new Promise((r) => setTimeout(r, 1));
        n++;
        const lsn = BigInt(n * 0x100);
        const tx = {
          xid: String(n),
          commitLsn: lsn - 1n,
          endLsn: lsn,
          commitTimeIso: new Date().toISOString(),
          changes: [],
          continued: false,
        } as SourceTransaction;
        return { transactions: [tx], confirmableLsn: lsn };
      },
      async stop() {
        stopped = true;
      },
      async readRow() {
        return null;
      },
    } as unknown as StreamReader;
    const router = {
      route(transactions: SourceTransaction[], appliedUpTo: bigint[]) {
        return [0, 1].map((t) =>
          transactions.filter((x) => x.endLsn > (appliedUpTo[t] ?? 0n)).map((x) => put(Number(x.xid))),
        );
      },
    } as unknown as ChangeRouter;
    const running = runReplication({ reader, router, appliers, confirmer }, { keepGoing: () => true });
    running.catch(() => {});
    try {
      const deadline = Date.now() + 15_000;
      while (confirmed.length < 5) {
        if (Date.now() > deadline) throw new Error("nothing confirmed");
        await new Promise((r) => setTimeout(r, 10));
      }
      await new Promise((r) => setTimeout(r, 150));
      await server.crash();
      await expect(running).rejects.toThrow(/ended|terminat|Connection|ECONNRESET|EPIPE/i);
      await confirmer.stop();
      const upTo = confirmed.at(-1) ?? 0n;
      await server.restart();
      const lastConfirmed = Number(upTo / 0x100n);
      expect(lastConfirmed).toBeGreaterThan(0);
      for (const pool of pools) {
        const { rows } = await pool.query<{ n: number }>(
          "select count(*)::int as n from items where id <= $1",
          [lastConfirmed],
        );
        expect(rows[0]?.n).toBe(lastConfirmed);
      }
      // The crashed target lost some commits (else the test proved nothing about the window).
      const { rows } = await crashPool.query<{ n: number }>("select count(*)::int as n from items");
      const survived0 = await readOriginProgress(crashPool, origins[0] as string);
      console.log(
        `read ${n} batches, confirmed up to ${lastConfirmed}, target 0 holds ${rows[0]?.n} rows (origin ${survived0 / 0x100n})`,
      );
    } finally {
      await appliers.close();
      await crashPool.query("select pg_replication_origin_drop($1)", [origins[0]]).catch(() => {});
      await other.pool.query("select pg_replication_origin_drop($1)", [origins[1]]).catch(() => {});
    }
  }, 90_000);
});
