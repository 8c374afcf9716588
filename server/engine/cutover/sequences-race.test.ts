// The cutover ledger test (CI, session 10's submission) saw "duplicate key value violates unique
// constraint events_pkey" in an application insert with four cutovers at a time. The sequence step
// set `setval(s, greatest(last_value, floor))`: when the target's sequence was already past the
// floor, it set back the value it had just read, while other tenants' inserts on that target were
// taking ids — which were then handed out again. Here inserts hammer a sequence while the step runs
// again and again with a floor below it: not one id may be handed out twice, and concurrent setters
// with different floors must leave the sequence past the highest old owner's value.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { advanceSequences, advanceSequencesFromAll, SEQUENCE_HEADROOM, SEQUENCE_LEAD } from "./sequences";

let target: TestDatabase;
let lowOwner: TestDatabase;
let highOwner: TestDatabase;
const SEQ = "public.events_id_seq";
const DDL = "create table events (id bigserial primary key, n int not null)";

beforeAll(async () => {
  target = await createTestDatabase("seqrace_target");
  lowOwner = await createTestDatabase("seqrace_low");
  highOwner = await createTestDatabase("seqrace_high");
  for (const db of [target, lowOwner, highOwner]) await db.pool.query(DDL);
  await lowOwner.pool.query("select setval($1, 10)", [SEQ]);
  await highOwner.pool.query("select setval($1, 5000000)", [SEQ]);
  // The target is past the low owner's floor, as a shard is after its first few cutovers.
  await target.pool.query("select setval($1, $2)", [SEQ, (10n + SEQUENCE_HEADROOM + 5_000n).toString()]);
}, 60_000);

afterAll(async () => {
  for (const db of [target, lowOwner, highOwner]) await db?.drop();
});

describe("carrying sequences to a new owner", () => {
  it("never hands an id out twice while other tenants insert on the new owner", async () => {
    const inserters = await Promise.all(
      Array.from({ length: 6 }, () => {
        const c = new pg.Client({ connectionString: target.url });
        return c.connect().then(() => c);
      }),
    );
    const errors: string[] = [];
    let inserted = 0;
    let stop = false;
    const hammer = inserters.map(async (c) => {
      while (!stop) {
        try {
          await c.query("insert into events (n) values (1)");
          inserted += 1;
        } catch (e) {
          errors.push((e as Error).message);
        }
      }
    });
    let steps = 0;
    const deadline = Date.now() + 4_000;
    while (Date.now() < deadline) {
      await advanceSequences(lowOwner.pool, target.pool, [SEQ]);
      steps += 1;
    }
    stop = true;
    await Promise.all(hammer);
    await Promise.all(inserters.map((c) => c.end()));
    expect(inserted).toBeGreaterThan(500);
    expect(steps).toBeGreaterThan(100);
    expect([...new Set(errors)]).toEqual([]);
  }, 30_000);

  it("the pass inside a freeze writes nothing and waits for no other setter after the pass before it", async () => {
    // The pre-freeze pass (with its lead), then the old owner moves on as other tenants insert there.
    const owner = await createTestDatabase("seqrace_owner");
    try {
      await owner.pool.query(DDL);
      await owner.pool.query("select setval($1, 7000000)", [SEQ]);
      await advanceSequences(owner.pool, target.pool, [SEQ], SEQUENCE_LEAD);
      await owner.pool.query("select setval($1, 7000500)", [SEQ]);
      const before = await target.pool.query<{ v: string }>(
        "select last_value::text as v from events_id_seq",
      );
      // Another cutover's setter holds this sequence's lock (SEQUENCE_LOCK_CLASS) meanwhile.
      const other = new pg.Client({ connectionString: target.url });
      await other.connect();
      try {
        await other.query("begin");
        await other.query("select pg_advisory_xact_lock(7363401, hashtext($1))", [SEQ]);
        const pass = advanceSequences(owner.pool, target.pool, [SEQ]);
        const outcome = await Promise.race([
          pass.then(() => "done"),
          new Promise((resolve) => setTimeout(() => resolve("waited on the other setter"), 2_000)),
        ]);
        await other.query("commit");
        await pass;
        expect(outcome).toBe("done");
      } finally {
        await other.end();
      }
      const after = await target.pool.query<{ v: string }>("select last_value::text as v from events_id_seq");
      expect(after.rows[0]?.v).toBe(before.rows[0]?.v);
      expect(BigInt(after.rows[0]?.v ?? "0")).toBeGreaterThanOrEqual(7_000_500n + SEQUENCE_HEADROOM);
    } finally {
      await owner.drop();
    }
  }, 30_000);

  it("the pass inside a freeze does not ask the new owner when the pass before it left it past the floor", async () => {
    const lead = await advanceSequences(highOwner.pool, target.pool, [SEQ], SEQUENCE_LEAD);
    const known = new Map(lead.map((b) => [b.sequence, b.newOwner]));
    // A new owner that cannot be reached: asking it at all fails the pass.
    const unreachable = new pg.Pool({ connectionString: "postgres://nobody@127.0.0.1:1/none", max: 1 });
    unreachable.on("error", () => {});
    try {
      const bumps = await advanceSequences(highOwner.pool, unreachable, [SEQ], 0n, known);
      expect(bumps).toEqual([{ sequence: SEQ, oldOwner: 5_000_000n, newOwner: known.get(SEQ) }]);
      // Past what is known (the old owner went on inserting beyond the lead), it is asked again.
      await expect(
        advanceSequences(highOwner.pool, unreachable, [SEQ], 0n, new Map([[SEQ, 5_000_000n]])),
      ).rejects.toThrow();
    } finally {
      await unreachable.end();
    }
  }, 30_000);

  it("ends past the highest old owner's value when two setters race", async () => {
    for (let round = 0; round < 150; round++) {
      await target.pool.query("select setval($1, 1)", [SEQ]);
      await Promise.all([
        advanceSequences(lowOwner.pool, target.pool, [SEQ]),
        advanceSequences(highOwner.pool, target.pool, [SEQ]),
        advanceSequencesFromAll([lowOwner.pool], target.pool, [SEQ]),
      ]);
      const { rows } = await target.pool.query<{ v: string }>(
        "select last_value::text as v from events_id_seq",
      );
      expect(BigInt(rows[0]?.v ?? "0")).toBeGreaterThanOrEqual(5_000_000n + SEQUENCE_HEADROOM);
    }
  }, 60_000);
});
