// Apply lanes (target-lanes.ts) on two real targets: a target that is slow to commit holds back
// only its own changes, each lane keeps the stream's order and stamps, and the first failure stops
// every lane — nothing queued after it is applied anywhere.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import type { Statement } from "./apply";
import { readOriginProgress, TargetApplier, TargetAppliers } from "./target-applier";
import { TargetLanes } from "./target-lanes";

let targets: TestDatabase[] = [];

beforeAll(async () => {
  targets = [await createTestDatabase("lanes_t0"), await createTestDatabase("lanes_t1")];
  for (const t of targets) await t.pool.query("create table items (id bigint primary key, v text)");
});

afterAll(async () => {
  for (const t of targets) await t.drop();
});

const put = (id: number, v = "x"): Statement => ({
  name: "lanes_put",
  text: "insert into items (id, v) values ($1::bigint, $2) on conflict (id) do update set v = excluded.v",
  values: [String(id), v],
});
const broken: Statement = { text: "insert into no_such_table values (1)", values: [] };
const stamp = (lsn: bigint) => ({ lsn, commitTimeIso: new Date().toISOString() });

async function openAppliers(name: string): Promise<{ appliers: TargetAppliers; origins: string[] }> {
  const origins = targets.map((_, i) => `shardshift_lanes_${name}_t${i}`);
  const all = await Promise.all(
    targets.map((t, i) => TargetApplier.open({ url: t.url, ordinal: i, origin: origins[i] as string })),
  );
  return { appliers: new TargetAppliers(all), origins };
}

async function dropOrigins(origins: string[]): Promise<void> {
  for (const [i, t] of targets.entries())
    await t.pool.query("select pg_replication_origin_drop($1)", [origins[i]]).catch(() => {});
}

/** Holds a share lock (writes wait, reads do not) on target i's table until released: its applies wait. */
async function blockTarget(i: number): Promise<() => Promise<void>> {
  const client = new pg.Client({ connectionString: targets[i]?.url });
  await client.connect();
  await client.query("begin; lock table items in share mode");
  return async () => {
    await client.query("commit");
    await client.end();
  };
}

async function ids(i: number): Promise<number[]> {
  const { rows } = await (targets[i] as TestDatabase).pool.query<{ id: string }>(
    "select id::text from items order by id",
  );
  return rows.map((r) => Number(r.id));
}

async function pollUntil(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("apply lanes", () => {
  it("a target slow to commit holds back only its own changes, and keeps their order", async () => {
    const { appliers, origins } = await openAppliers("slow");
    const release = await blockTarget(0);
    try {
      const lanes = new TargetLanes(appliers, {});
      const first = lanes.enqueue([[put(1)], [put(1)]], stamp(0x100n));
      const second = lanes.enqueue([[put(2), put(1, "second")], [put(2)]], stamp(0x200n));
      const third = lanes.enqueue([[put(1, "third")], [put(3)]], stamp(0x300n));
      expect([...third.stamps]).toEqual([
        [0, 0x300n],
        [1, 0x300n],
      ]);
      // Target 1 applied every batch while target 0 still waits for its first.
      await pollUntil("target 1 to apply all three batches", async () => (await ids(1)).length === 3);
      expect(await ids(0)).toEqual([]);
      expect(await readOriginProgress((targets[1] as TestDatabase).pool, origins[1] as string)).toBe(0x300n);
      await release();
      await Promise.all([first.committed, second.committed, third.committed]);
      await lanes.drain();
      expect(await ids(0)).toEqual([1, 2]);
      const { rows } = await (targets[0] as TestDatabase).pool.query("select v from items where id = 1");
      expect(rows[0]?.v).toBe("third");
      // The batches that waited went in one transaction, stamped with the last of them.
      expect(await readOriginProgress((targets[0] as TestDatabase).pool, origins[0] as string)).toBe(0x300n);
    } finally {
      await release().catch(() => {});
      await appliers.close();
      await dropOrigins(origins);
      for (const t of targets) await t.pool.query("truncate items");
    }
  }, 30_000);

  it("the first failure stops every lane: nothing queued after it is applied", async () => {
    const { appliers, origins } = await openAppliers("fail");
    const release = await blockTarget(1);
    const failures: unknown[] = [];
    try {
      const lanes = new TargetLanes(
        appliers,
        {},
        () => {},
        (e) => failures.push(e),
      );
      lanes.enqueue([[put(10)], [put(20)]], stamp(0x100n));
      // Target 0 takes this batch once its first committed, and fails; target 1's share waits.
      const failing = lanes.enqueue([[broken], [put(21)]], stamp(0x200n));
      await expect(failing.committed).rejects.toThrow(/no_such_table/);
      expect(() => lanes.enqueue([[put(11)], [put(22)]], stamp(0x300n))).toThrow(/no_such_table/);
      await release();
      await expect(lanes.drain()).rejects.toThrow(/no_such_table/);
      expect(failures).toHaveLength(1);
      // Target 1 committed what it was running when target 0 failed, and nothing after it.
      expect(await ids(0)).toEqual([10]);
      expect(await ids(1)).toEqual([20]);
      expect(await readOriginProgress((targets[0] as TestDatabase).pool, origins[0] as string)).toBe(0x100n);
      expect(await readOriginProgress((targets[1] as TestDatabase).pool, origins[1] as string)).toBe(0x100n);
    } finally {
      await release().catch(() => {});
      await appliers.close();
      await dropOrigins(origins);
      for (const t of targets) await t.pool.query("truncate items");
    }
  }, 30_000);
});
