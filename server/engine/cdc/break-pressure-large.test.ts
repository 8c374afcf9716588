import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startPressureLoop } from "../../testing/pressure-loop";
import { replicationLatenessMs } from "../shared/replication-pressure";
import type { Statement } from "./apply";
import type { ChangeRouter } from "./change-router";
import type { SourceTransaction } from "./stream-reader";

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
    const loop = await startPressureLoop({
      url: target.url,
      origin: "shardshift_break_pressure_large_t0",
      router,
    });
    const { feed } = loop;
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
      await loop.close();
    }
  }, 60_000);

  it("holds nothing back for a large transaction whose pieces go to no target", async () => {
    let routed = 0;
    const loop = await startPressureLoop({
      url: target.url,
      origin: "shardshift_break_pressure_large_t1",
      router,
      hooks: {
        afterRoute: async () => {
          routed += 1;
        },
      },
    });
    const { feed } = loop;
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
      await loop.close();
    }
  }, 60_000);
});
