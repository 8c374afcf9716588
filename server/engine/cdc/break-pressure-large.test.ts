// Breaking replication-pressure.ts from a real replication loop: a large transaction arrives in
// pieces of a transaction the source already committed, applied into an open target transaction
// until the transaction that completes it arrives. Everything from its first piece on is read and
// not committed: the stream runs late for as long as the pieces take, and background work beside
// it must see that (it saw nothing: the pieces never entered the loop's batches in flight).
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { fakeReader } from "../../testing/fake-stream-reader";
import {
  installPressureBuffer,
  newPressureBuffer,
  replicationLatenessMs,
  watchPressure,
} from "../shared/replication-pressure";
import type { Statement } from "./apply";
import type { ChangeRouter } from "./change-router";
import { Confirmer } from "./confirmer";
import { runReplication } from "./replication-loop";
import type { SourceTransaction } from "./stream-reader";
import { readOriginProgress, TargetApplier, TargetAppliers } from "./target-applier";

let target: TestDatabase;

beforeAll(async () => {
  target = await createTestDatabase("break_pressure_large");
  await target.pool.query("create table items (id bigint primary key)");
});

afterAll(async () => {
  await target?.drop();
});

let nextId = 1;
const ins = (): Statement => ({
  name: "break_pressure_large_ins",
  text: "insert into items (id) values ($1::bigint)",
  values: [String(nextId++)],
});

// One row per transaction or piece routed, whatever it holds; transaction 200 carries nothing for
// this target (a reverse stream reading a large backfill chunk for tenants its shard does not own).
const router = {
  route(transactions: SourceTransaction[]) {
    return [transactions.filter((t) => t.xid !== "200").map(() => ins())];
  },
} as unknown as ChangeRouter;

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("a large transaction beside background work", () => {
  it("holds background work back from its first piece until the transaction that completes it committed", async () => {
    const buffer = newPressureBuffer();
    installPressureBuffer(buffer);
    const unwatch = watchPressure(buffer);
    const origin = "shardshift_break_pressure_large_t0";
    const applier = await TargetApplier.open({ url: target.url, ordinal: 0, origin });
    const appliers = new TargetAppliers([applier]);
    const admin = new pg.Client({ connectionString: target.url });
    await admin.connect();
    const confirmer = new Confirmer({
      durableOf: () => readOriginProgress(admin, origin),
      confirm: () => {},
      periodMs: 50,
      log: () => {},
    });
    const { reader, feed } = fakeReader();
    const running = runReplication({ reader, router, appliers, confirmer }, { keepGoing: () => true });
    running.catch(() => {});
    try {
      // The source committed the large transaction; its first piece is read and applied.
      const committedAt = new Date().toISOString();
      feed({ transactions: [], confirmableLsn: 0n, piece: { xid: "100", commitLsn: 0x40n, changes: [] } });
      await until("the piece to be inside the target's transaction", async () => {
        const { rows } = await target.pool.query<{ n: number }>(
          "select count(*)::int as n from pg_stat_activity where datname = current_database() and state = 'idle in transaction'",
        );
        return (rows[0]?.n ?? 0) > 0;
      });
      // More pieces take their time (a transaction of millions of rows takes seconds or minutes).
      await new Promise((r) => setTimeout(r, 300));
      feed({ transactions: [], confirmableLsn: 0n, piece: { xid: "100", commitLsn: 0x40n, changes: [] } });
      await new Promise((r) => setTimeout(r, 50));
      // Nothing of it committed on the target 350 ms after it was read: replication runs late.
      expect((await target.pool.query("select 1 from items")).rowCount).toBe(0);
      expect(replicationLatenessMs()).toBeGreaterThanOrEqual(300);

      // The transaction that completes it commits it: nothing is held any more.
      const end: SourceTransaction = {
        xid: "100",
        commitLsn: 0x40n,
        endLsn: 0x41n,
        commitTimeIso: committedAt,
        changes: [],
        continued: true,
      };
      feed({ transactions: [end], confirmableLsn: 0x41n });
      await until("the large transaction committed", async () => {
        return (await target.pool.query("select 1 from items")).rowCount === 3;
      });
      await until("nothing held", () => replicationLatenessMs() <= 5);
    } finally {
      await reader.stop();
      await running.catch(() => {});
      await confirmer.stop();
      await appliers.close();
      await target.pool.query("select pg_replication_origin_drop($1)", [origin]).catch(() => {});
      await admin.end();
      unwatch();
    }
  }, 60_000);

  it("holds nothing back for a large transaction whose pieces go to no target", async () => {
    const buffer = newPressureBuffer();
    installPressureBuffer(buffer);
    const unwatch = watchPressure(buffer);
    const origin = "shardshift_break_pressure_large_t1";
    const applier = await TargetApplier.open({ url: target.url, ordinal: 0, origin });
    const appliers = new TargetAppliers([applier]);
    const admin = new pg.Client({ connectionString: target.url });
    await admin.connect();
    const confirmer = new Confirmer({
      durableOf: () => readOriginProgress(admin, origin),
      confirm: () => {},
      periodMs: 50,
      log: () => {},
    });
    const { reader, feed } = fakeReader();
    let routed = 0;
    const running = runReplication(
      { reader, router, appliers, confirmer },
      {
        keepGoing: () => true,
        afterRoute: async () => {
          routed += 1;
        },
      },
    );
    running.catch(() => {});
    try {
      const readAt = Date.now();
      feed({ transactions: [], confirmableLsn: 0n, piece: { xid: "200", commitLsn: 0x80n, changes: [] } });
      await until("the piece routed", () => routed === 1);
      await until("100 ms since it was read", () => Date.now() - readAt >= 100);
      expect(replicationLatenessMs()).toBeLessThanOrEqual(5);
      feed({
        transactions: [
          {
            xid: "200",
            commitLsn: 0x80n,
            endLsn: 0x81n,
            commitTimeIso: new Date().toISOString(),
            changes: [],
            continued: true,
          },
        ],
        confirmableLsn: 0x81n,
      });
      await until("its end routed", () => routed === 2);
      expect(replicationLatenessMs()).toBeLessThanOrEqual(5);
    } finally {
      await reader.stop();
      await running.catch(() => {});
      await confirmer.stop();
      await appliers.close();
      await target.pool.query("select pg_replication_origin_drop($1)", [origin]).catch(() => {});
      await admin.end();
      unwatch();
    }
  }, 60_000);
});
