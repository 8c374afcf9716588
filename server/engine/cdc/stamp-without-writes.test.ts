// A stamped apply transaction whose statements change nothing must still move the target's origin.
// PostgreSQL writes no commit record — and so records no origin progress — for a transaction that
// never got an xid, and a batch can write nothing on a target: a replayed DELETE of a row already
// gone (a shard that crashed after its origin's last flush but with the delete on disk), an upsert
// of a reference row DO NOTHING keeps. The runner counts the target as written (it sent statements)
// and the confirmer waits for its origin to reach the batch: with no later write to that target,
// the slot stopped confirming for good (cascade-crash.test.ts timed out waiting for CDC to catch up,
// its crashed shard's origin at 0/0 and its session idle after the stamped commit).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import type { Statement } from "./apply";
import { readOriginProgress, TargetApplier } from "./target-applier";

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase("stamp_without_writes");
  await database.pool.query("create table items (id bigint primary key, v text)");
});

afterAll(async () => {
  await database?.drop();
});

const deleteItem = (id: number): Statement => ({
  name: "stamp_without_writes_delete",
  text: "delete from items where id = $1::bigint",
  values: [String(id)],
});
const stamp = (lsn: bigint) => ({ lsn, commitTimeIso: new Date().toISOString() });

describe("a stamped batch that changes nothing on the target", () => {
  it("moves the origin all the same, on the first use of a statement and after", async () => {
    const origin = "shardshift_stamp_without_writes_t0";
    const target = await TargetApplier.open({ url: database.url, ordinal: 0, origin });
    try {
      // Not parsed yet on this connection: the pipelined path.
      expect(await target.apply([deleteItem(1)], stamp(0x100n))).toBe(true);
      expect(await readOriginProgress(database.pool, origin)).toBe(0x100n);
      // Parsed: one message.
      expect(await target.apply([deleteItem(2)], stamp(0x200n))).toBe(true);
      expect(await readOriginProgress(database.pool, origin)).toBe(0x200n);
    } finally {
      await target.close();
      await database.pool.query(
        `select pg_replication_origin_drop(roname) from pg_replication_origin where roname = '${origin}'`,
      );
    }
  });
});
