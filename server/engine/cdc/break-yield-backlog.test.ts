import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startPressureLoop } from "../../testing/pressure-loop";
import { replicationLatenessMs, yieldToReplication } from "../shared/replication-pressure";
import { TokenBucket } from "../shared/token-bucket";
import type { Statement } from "./apply";
import type { ChangeRouter } from "./change-router";
import type { SourceTransaction } from "./stream-reader";

let target: TestDatabase;

beforeAll(async () => {
  target = await createTestDatabase("break_yield_backlog");
  await target.pool.query("create table items (id bigint primary key, pad text)");
});

afterAll(async () => {
  await target?.drop();
});

const ROWS_PER_BATCH = 20;
const BATCHES = 12_000;

const router = {
  route(transactions: SourceTransaction[], appliedUpTo: bigint[]) {
    const out: Statement[] = [];
    for (const t of transactions) {
      if (t.endLsn <= (appliedUpTo[0] ?? 0n)) continue;
      const first = Number(t.xid) * ROWS_PER_BATCH;
      for (let r = 0; r < ROWS_PER_BATCH; r++) {
        out.push({
          name: "backlog_ins",
          text: "insert into items (id, pad) values ($1::bigint, repeat('x', 200))",
          values: [String(first + r)],
        });
      }
    }
    return [out];
  },
} as unknown as ChangeRouter;

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 120_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("background work beside a stream catching up a backlog", () => {
  it("keeps about its set rate", async () => {
    const loop = await startPressureLoop({
      url: target.url,
      origin: "shardshift_break_yield_backlog",
      router,
    });
    const { feed } = loop;
    try {
      // The backlog: a minute of the source's commits, waiting in the slot.
      const from = Date.now() - 60_000;
      for (let b = 1; b <= BATCHES; b++) {
        const endLsn = BigInt(b * 16);
        const t: SourceTransaction = {
          xid: String(b),
          commitLsn: endLsn - 1n,
          endLsn,
          commitTimeIso: new Date(from + (b * 60_000) / BATCHES / 2).toISOString(),
          changes: [],
          continued: false,
        };
        feed({ transactions: [t], confirmableLsn: endLsn });
      }
      // The background work: 4,000 rows/s in chunks of 1/16 s, as throttle() charges it.
      const rate = 4_000;
      const bucket = new TokenBucket(rate);
      let done = false;
      let rows = 0;
      const lateness: number[] = [];
      const started = performance.now();
      const caughtUp = until(
        "the backlog applied",
        async () =>
          Number((await target.pool.query("select count(*)::int as n from items")).rows[0].n) ===
          BATCHES * ROWS_PER_BATCH,
      ).finally(() => {
        done = true;
      });
      while (!done) {
        lateness.push(replicationLatenessMs());
        const pace = await yieldToReplication();
        await bucket.take(Math.ceil(250 / pace));
        rows += 250;
      }
      await caughtUp;
      const seconds = (performance.now() - started) / 1000;
      const share = rows / seconds / rate;
      lateness.sort((a, b) => a - b);
      const at = (q: number) => lateness[Math.min(lateness.length - 1, Math.floor(q * lateness.length))];
      console.log(
        `catch-up ${seconds.toFixed(1)} s; background at ${share.toFixed(2)}x its rate; lateness p50 ${at(0.5)} p90 ${at(0.9)} max ${at(1)} ms over ${lateness.length} chunks`,
      );
      expect(seconds).toBeGreaterThan(2); // long enough to tell a rate
      expect(share).toBeGreaterThan(0.8);
    } finally {
      await loop.close();
    }
  }, 180_000);
  // A stream falling further behind (the source writes faster than it applies) still counts: that is
  // told apart by timestamps in replication-pressure.test.ts. A live source here counted it in
  // 1.7–100% of samples, as the machine's load set how long each apply held a batch.
});
