// Background work waits for a replication loop that runs late (shared/replication-pressure.ts), on
// a real target: the loop (replication-loop.ts) reports the batch its target holds back, a chunk of
// background work waits until that batch commits, and a loop that ended holds nothing back.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startPressureLoop } from "../../testing/pressure-loop";
import { replicationLatenessMs, yieldToReplication } from "../shared/replication-pressure";
import type { Statement } from "./apply";
import type { ChangeRouter } from "./change-router";
import type { SourceTransaction } from "./stream-reader";

let target: TestDatabase;

beforeAll(async () => {
  target = await createTestDatabase("pressure_loop");
  await target.pool.query("create table items (id bigint primary key)");
});

afterAll(async () => {
  await target?.drop();
});

const ins = (id: number): Statement => ({
  name: "pressure_ins",
  text: "insert into items (id) values ($1::bigint)",
  values: [String(id)],
});

function tx(id: number, endLsn: bigint, committedMsAgo = 0): SourceTransaction {
  return {
    xid: String(id),
    commitLsn: endLsn - 1n,
    endLsn,
    commitTimeIso: new Date(Date.now() - committedMsAgo).toISOString(),
    changes: [],
    continued: false,
  };
}

// Transactions from xid 1000 on carry only changes this target does not take (a reverse stream
// reading a backfill's rows for tenants the shard does not own): routed nowhere.
const router = {
  route(transactions: SourceTransaction[], appliedUpTo: bigint[]) {
    return [
      transactions
        .filter((t) => t.endLsn > (appliedUpTo[0] ?? 0n) && Number(t.xid) < 1000)
        .map((t) => ins(Number(t.xid))),
    ];
  },
} as unknown as ChangeRouter;

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("background work beside a replication loop", () => {
  it("waits while the loop's target holds a batch back, and goes once it committed", async () => {
    const loop = await startPressureLoop({ url: target.url, origin: "shardshift_pressure_loop_t0", router });
    const { feed, running } = loop;
    const blocker = new pg.Client({ connectionString: target.url });
    await blocker.connect();
    try {
      feed({ transactions: [tx(1, 0x10n)], confirmableLsn: 0x10n });
      await until(
        "row 1 applied",
        async () => (await target.pool.query("select 1 from items")).rowCount === 1,
      );
      await until("nothing held", () => replicationLatenessMs() === 0);

      // The target's table is locked: batch 2 waits in its lane.
      await blocker.query("begin; lock table items in share mode");
      feed({ transactions: [tx(2, 0x20n)], confirmableLsn: 0x20n });
      await until("batch 2 held back", () => replicationLatenessMs() > 50);
      let waited: number | null = null;
      const started = Date.now();
      const chunk = yieldToReplication({ limitMs: 5, maxPauseMs: 60_000 }).then(() => {
        waited = Date.now() - started;
      });
      await until("the chunk to have waited 200 ms", () => Date.now() - started >= 200);
      expect(waited).toBeNull();

      await blocker.query("commit");
      await chunk;
      expect(waited).not.toBeNull();
      expect((await target.pool.query("select 1 from items where id = 2")).rowCount).toBe(1);
      expect(replicationLatenessMs()).toBeLessThanOrEqual(5);

      // A loop that ended releases its slot: nothing it left behind holds background work back.
      await blocker.query("begin; lock table items in share mode");
      feed({ transactions: [tx(3, 0x30n)], confirmableLsn: 0x30n });
      await until("batch 3 held back", () => replicationLatenessMs() > 50);
      // Its apply session ends (as when its server goes away): the loop ends with that failure.
      await blocker.query(
        "select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
      );
      await running.catch(() => {});
      expect(replicationLatenessMs()).toBe(0);
    } finally {
      await blocker.query("rollback").catch(() => {});
      await blocker.end();
      await loop.close();
    }
  }, 60_000);

  it("counts only batches it delivered: one it routed nowhere holds nothing back, however old", async () => {
    let done = 0;
    const loop = await startPressureLoop({
      url: target.url,
      origin: "shardshift_pressure_loop_t1",
      router,
      hooks: {
        applied: () => {
          done += 1;
        },
      },
    });
    const { feed } = loop;
    const applied = async (id: number) =>
      (await target.pool.query("select 1 from items where id = $1", [id])).rowCount === 1;
    try {
      // The least delay of the minute: a batch delivered as soon as it committed.
      feed({ transactions: [tx(11, 0x110n)], confirmableLsn: 0x110n });
      await until("row 11 applied", () => applied(11));
      // Batches that carry nothing for this target, committed 300 ms before we read them (the
      // source's WAL sender and our thread busy with a backfill's rows): nothing to yield to.
      for (let i = 0; i < 5; i++) {
        const lsn = 0x120n + BigInt(i) * 0x10n;
        feed({ transactions: [tx(1000 + i, lsn, 300)], confirmableLsn: lsn });
      }
      await until("the five batches through the loop", () => done === 6);
      expect(replicationLatenessMs()).toBeLessThanOrEqual(5);
      // The same delay on a batch it delivered counts.
      feed({ transactions: [tx(13, 0x210n, 300)], confirmableLsn: 0x210n });
      await until("row 13 through the loop", () => done === 7);
      expect(await applied(13)).toBe(true);
      expect(replicationLatenessMs()).toBeGreaterThan(200);
    } finally {
      await loop.close();
    }
  }, 60_000);
});
