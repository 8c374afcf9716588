// A partitioned table on legacy: its changes reach the slot named after the root (the table the
// migration knows), not after the partition that stored them.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { type Change, PgoutputDecoder } from "./pgoutput";
import { createPublication, createSlot, dropSlot } from "./slot";

let legacy: TestDatabase;
const slot = "h6_partition_root";

beforeAll(async () => {
  legacy = await createTestDatabase("partition_pub");
  await legacy.pool.query(`
    create table items (tenant_id int not null, id int not null, note text, primary key (tenant_id, id))
      partition by hash (tenant_id);
    create table items_p0 partition of items for values with (modulus 2, remainder 0);
    create table items_p1 partition of items for values with (modulus 2, remainder 1);`);
});

afterAll(async () => {
  await dropSlot(legacy.pool, slot).catch(() => {});
  await legacy?.drop();
});

describe("partitioned tables in the publication", () => {
  it("publishes a partition's changes as the root's", async () => {
    await createPublication(legacy.pool, "h6_partition_pub", [{ schema: "public", table: "items" }]);
    await createSlot(legacy.pool, slot);
    await legacy.pool.query("insert into items select t, 1, 'n' from generate_series(1, 6) t");
    await legacy.pool.query("update items set note = 'u' where tenant_id = 2");
    // A synchronous commit flushes the WAL up to it: the peek reads only flushed WAL.
    await legacy.pool.query(
      "begin; set local synchronous_commit = on; delete from items where tenant_id = 3; commit",
    );
    const { rows } = await legacy.pool.query<{ data: Buffer }>(
      "select data from pg_logical_slot_peek_binary_changes($1, null, null, 'proto_version', '1', 'publication_names', 'h6_partition_pub')",
      [slot],
    );
    const decoder = new PgoutputDecoder();
    const changes: Change[] = [];
    for (const row of rows) {
      const message = decoder.decode(row.data);
      if (message.tag === "change") changes.push(message.change);
    }
    expect(changes.map((c) => c.kind)).toEqual([...Array(6).fill("insert"), "update", "delete"]);
    const tables = new Set(
      changes.map((c) =>
        c.kind === "truncate" || c.kind === "message" ? "" : `${c.relation.schema}.${c.relation.table}`,
      ),
    );
    expect([...tables]).toEqual(["public.items"]);
  });
});
