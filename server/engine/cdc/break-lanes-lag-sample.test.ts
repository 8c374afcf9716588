// Adversarial (brk17): the lag the forward stream reports (cdc.lag_ms: the cutover pre-check's
// freeze budget, the backfill's throttle, the gates) is sampled in the `applied` hook, about once a
// second, from the batch whose hook fires: now − its last commit time. With the lanes, each batch's
// hook fired as soon as ITS targets committed, so batches of a fast target fired ahead of an
// earlier batch a slow target still held, and every sample came from a fast one: a shard minutes
// behind reported the lag of the others. Before the lanes a batch was done only once every target
// committed it, in stream order, so the lag was the slowest target's.
//
// Seen before the fix: target 0 held a batch for 3 s (a lock), target 1 applied a batch every
// 20 ms; the samples, taken as forward-cdc.ts takes them, stayed at a few ms (max 23 ms).
// Fixed: the hooks fire in stream order (replication-loop.ts), so a sample is never from a batch
// with an earlier one still unapplied.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import type { Statement } from "./apply";
import type { ChangeRouter } from "./change-router";
import type { Confirmer } from "./confirmer";
import { runReplication } from "./replication-loop";
import type { SourceBatch, SourceTransaction, StreamReader } from "./stream-reader";
import { TargetApplier, TargetAppliers } from "./target-applier";

let targets: TestDatabase[] = [];

beforeAll(async () => {
  targets = [await createTestDatabase("brk_lanes_lag_t0"), await createTestDatabase("brk_lanes_lag_t1")];
  for (const t of targets) await t.pool.query("create table items (id bigint primary key, v text)");
});

afterAll(async () => {
  for (const t of targets) await t.drop();
});

const put = (id: number): Statement => ({
  name: "brk_lanes_lag_put",
  text: "insert into items (id, v) values ($1::bigint, 'x') on conflict (id) do nothing",
  values: [String(id)],
});

describe("the lag samples with a slow target", () => {
  it("reflect the slowest target: no sample from a batch while an earlier one is unapplied", async () => {
    const origins = targets.map((_, i) => `shardshift_brk_lanes_lag_t${i}`);
    const appliers = new TargetAppliers(
      await Promise.all(
        targets.map((t, i) => TargetApplier.open({ url: t.url, ordinal: i, origin: origins[i] as string })),
      ),
    );
    const locker = new pg.Client({ connectionString: targets[0]?.url });
    await locker.connect();
    await locker.query("begin; lock table items in share mode");
    let n = 0;
    let stopped = false;
    const reader = {
      async next(): Promise<SourceBatch | null> {
        if (stopped) return null;
        await new Promise((r) => setTimeout(r, 20));
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
    // The first transaction writes to target 0 (held by the lock), every later one to target 1.
    const router = {
      route(transactions: SourceTransaction[]) {
        const id = Number(transactions[0]?.xid);
        return id === 1 ? [[put(id)], []] : [[], [put(id)]];
      },
    } as unknown as ChangeRouter;
    const confirmer = { applied() {} } as unknown as Confirmer;
    // As forward-cdc.ts samples: at most once a second, now − the last transaction's commit time.
    const samples: number[] = [];
    let lastSample = 0;
    const running = runReplication(
      { reader, router, appliers, confirmer },
      {
        keepGoing: () => true,
        applied(last) {
          const t = Date.now();
          if (t - lastSample < 1_000 || !last) return;
          lastSample = t;
          samples.push(Math.max(0, t - new Date(last.commitTimeIso).getTime()));
        },
      },
    );
    running.catch(() => {});
    try {
      await new Promise((r) => setTimeout(r, 3_000));
      await locker.query("commit");
      await new Promise((r) => setTimeout(r, 500));
      // Batch 1 waited 3 s on target 0: a sample taken meanwhile or as it landed must show it.
      expect(Math.max(0, ...samples)).toBeGreaterThanOrEqual(2_000);
    } finally {
      await locker.query("rollback").catch(() => {});
      await locker.end();
      await reader.stop();
      await running.catch(() => {});
      await appliers.close();
      for (const [i, t] of targets.entries())
        await t.pool.query("select pg_replication_origin_drop($1)", [origins[i]]).catch(() => {});
    }
  }, 60_000);
});
