// Adversarial (brk17): backpressure with one slow target. The loop waits (lanes.room) only while a
// lane holds more than LANE_MAX_WAITING_STATEMENTS statements not yet sent. But for every batch it
// keeps, until EVERY target the batch went to committed, a closure over the whole batch (for the
// `applied` hook and the stage trace) — all its source changes, including the fast targets' shares
// that committed long ago. A target stuck in one transaction (a lock wait, up to the statement
// timeout) that receives one statement per batch while another target receives thousands lets the
// loop read 20,000 batches — up to 20,000 changes each (the reader's buffer) — and hold all of them.
//
// Seen before the fix: with target 0 blocked, every one of 40 batches of 2,000 changes, applied on
// target 1 already, was still reachable (40 of 40 alive after a GC): memory grows with the slow
// lane's batch count times the fast targets' batch size, not with the 20,000-statement bound.
// Fixed: the loop keeps only the commit times the hooks need (replication-loop.ts), not the batch.
import v8 from "node:v8";
import vm from "node:vm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import type { Statement } from "./apply";
import type { ChangeRouter } from "./change-router";
import type { Confirmer } from "./confirmer";
import { runReplication } from "./replication-loop";
import type { SourceBatch, SourceTransaction, StreamReader } from "./stream-reader";
import { TargetApplier, TargetAppliers } from "./target-applier";

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;

let targets: TestDatabase[] = [];

beforeAll(async () => {
  targets = [await createTestDatabase("brk_lanes_ret_t0"), await createTestDatabase("brk_lanes_ret_t1")];
  for (const t of targets) await t.pool.query("create table items (id bigint primary key, v text)");
});

afterAll(async () => {
  for (const t of targets) await t.drop();
});

const put = (id: number): Statement => ({
  name: "brk_lanes_ret_put",
  text: "insert into items (id, v) values ($1::bigint, 'x') on conflict (id) do nothing",
  values: [String(id)],
});

const BATCHES = 40;
const CHANGES_PER_BATCH = 2_000;

describe("a slow target and the loop's memory", () => {
  it("does not keep the batches a fast target applied while a slow target holds one of their statements", async () => {
    const origins = targets.map((_, i) => `shardshift_brk_lanes_ret_t${i}`);
    const appliers = new TargetAppliers(
      await Promise.all(
        targets.map((t, i) => TargetApplier.open({ url: t.url, ordinal: i, origin: origins[i] as string })),
      ),
    );
    // Target 0's writes wait on a lock: its lane stays inside its first transaction.
    const locker = new pg.Client({ connectionString: targets[0]?.url });
    await locker.connect();
    await locker.query("begin; lock table items in share mode");
    const alive: WeakRef<SourceBatch>[] = [];
    let read = 0;
    let stopped = false;
    let wake: () => void = () => {};
    const reader = {
      async next(): Promise<SourceBatch | null> {
        if (stopped) return null;
        if (read === BATCHES) {
          await new Promise<void>((r) => {
            wake = r;
          });
          return null;
        }
        read++;
        const lsn = BigInt(read * 0x100);
        // A transaction with many changes (here: payload only; target 1 gets one statement for them).
        const changes = Array.from({ length: CHANGES_PER_BATCH }, (_, k) => ({
          k,
          payload: "v".repeat(200),
        }));
        const tx = {
          xid: String(read),
          commitLsn: lsn - 1n,
          endLsn: lsn,
          commitTimeIso: new Date().toISOString(),
          changes,
          continued: false,
        } as unknown as SourceTransaction;
        const batch: SourceBatch = { transactions: [tx], confirmableLsn: lsn };
        alive.push(new WeakRef(batch));
        return batch;
      },
      async stop() {
        stopped = true;
        wake();
      },
      async readRow() {
        return null;
      },
    } as unknown as StreamReader;
    const router = {
      route(transactions: SourceTransaction[]) {
        const id = Number(transactions[0]?.xid);
        return [[put(id)], [put(id)]];
      },
    } as unknown as ChangeRouter;
    const confirmer = { applied() {} } as unknown as Confirmer;
    const running = runReplication({ reader, router, appliers, confirmer }, { keepGoing: () => true });
    running.catch(() => {});
    try {
      // Target 1 applies every batch; target 0 still waits in its first.
      const deadline = Date.now() + 20_000;
      for (;;) {
        const { rows } = await (targets[1] as TestDatabase).pool.query<{ n: number }>(
          "select count(*)::int as n from items",
        );
        if (rows[0]?.n === BATCHES) break;
        if (Date.now() > deadline) throw new Error("target 1 did not apply every batch");
        await new Promise((r) => setTimeout(r, 50));
      }
      await new Promise((r) => setTimeout(r, 100));
      gc();
      await new Promise((r) => setTimeout(r, 0));
      gc();
      const held = alive.filter((w) => w.deref() !== undefined).length;
      // The batch the loop is on may be held; what every target's lane took from it must not be.
      expect(held).toBeLessThanOrEqual(2);
    } finally {
      await locker.query("commit").catch(() => {});
      await locker.end();
      await reader.stop();
      await running.catch(() => {});
      await appliers.close();
      for (const [i, t] of targets.entries())
        await t.pool.query("select pg_replication_origin_drop($1)", [origins[i]]).catch(() => {});
    }
  }, 60_000);
});
