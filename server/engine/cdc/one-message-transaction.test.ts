// A batch applied as one simple-protocol message (literals, EXECUTE of the connection's prepared
// statements) must write exactly what the pipelined path (bound parameters) writes, for every value
// a row image can carry: quotes, backslashes, newlines, unicode, NULLs, arrays, JSON, bytea, and
// column names that look like placeholders.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { introspectSource } from "../analysis/introspect";
import { mergeRuns, type Statement, tableApplier } from "./apply";
import {
  inlineParameters,
  ONE_MESSAGE_MAX_VALUE_CHARS,
  oneMessageTransactionSql,
} from "./one-message-transaction";
import { readOriginProgress, TargetApplier } from "./target-applier";

describe("inlineParameters", () => {
  it("replaces placeholders, never inside quoted identifiers or string literals", () => {
    const text = `insert into t ("a$1", "b""$2", c) select $1::text, '$2 it''s', $2::int[] where $3 is null`;
    expect(inlineParameters(text, ["it's \\ here", ["1", null], null])).toBe(
      `insert into t ("a$1", "b""$2", c) select  E'it''s \\\\ here'::text, '$2 it''s', '{"1",NULL}'::int[] where NULL is null`,
    );
  });

  it("refuses a placeholder without its value", () => {
    expect(() => inlineParameters("select $2", ["x"])).toThrow(/refers to \$2/);
  });
});

const VALUES: (string | null)[][] = [
  [
    "1",
    "it's",
    "back\\slash",
    "line\nbreak\ttab",
    "ünïcødé ✓ 日本",
    '{"k": "v\'\\"q"}',
    "\\x00ff10",
    '{a,"b c",NULL}',
    null,
  ],
  ["2", "", "\\\\", "'; drop table items; --", "$1 $2", "[]", "\\x", "{}", "12.5000"],
  ["3", null, null, null, null, null, null, null, null],
];

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase("one_message");
  await database.pool.query(`create table items (
    id bigint primary key, a text, "b$1" text, "c""q" text, d text, e jsonb, f bytea, g text[], h numeric(12,4))`);
});

afterAll(async () => {
  await database?.drop();
});

async function rows(): Promise<unknown[]> {
  const { rows } = await database.pool.query("select to_jsonb(i) as r from items i order by id");
  return rows.map((r) => r.r);
}

describe("a batch in one message", () => {
  it("writes the same rows as the pipelined path, single and multi-row", { timeout: 60_000 }, async () => {
    const client = await database.pool.connect();
    let table: ReturnType<typeof tableApplier>;
    try {
      const schema = await introspectSource(client as pg.ClientBase, "id");
      const info = schema.tables.find((t) => t.name === "items");
      if (!info) throw new Error("items not introspected");
      table = tableApplier(info);
    } finally {
      client.release();
    }
    const origin = "shardshift_one_message_test_t0";
    const target = await TargetApplier.open({ url: database.url, ordinal: 0, origin });
    const row = (v: (string | null)[]) =>
      Object.fromEntries(["id", "a", "b$1", 'c"q', "d", "e", "f", "g", "h"].map((c, i) => [c, v[i] ?? null]));
    try {
      const client = (target as unknown as { client: pg.ClientBase }).client;
      const upserts = VALUES.map((v) => table.upsert(row(v)));
      // Nothing parsed yet on this connection: the first batches go the pipelined way.
      expect(oneMessageTransactionSql(client, upserts, "commit")).toBeNull();
      await target.apply(upserts.slice(0, 1), { lsn: 0x10n, commitTimeIso: new Date().toISOString() });
      const multi = mergeRuns(upserts);
      expect(multi).toHaveLength(1);
      await target.apply(upserts, { lsn: 0x20n, commitTimeIso: new Date().toISOString() });
      const pipelined = await rows();
      expect(pipelined).toHaveLength(3);

      // Now both the single-row and the multi-row statement are parsed: one message each.
      await database.pool.query("truncate items");
      expect(oneMessageTransactionSql(client, upserts.slice(0, 1), "commit")).not.toBeNull();
      expect(oneMessageTransactionSql(client, multi, "commit")).not.toBeNull();
      for (const [i, s] of upserts.entries())
        await target.apply([s], { lsn: BigInt(0x30 + i), commitTimeIso: new Date().toISOString() });
      expect(await rows()).toEqual(pipelined);
      await database.pool.query("truncate items");
      await target.apply(upserts, { lsn: 0x40n, commitTimeIso: new Date().toISOString() });
      expect(await rows()).toEqual(pipelined);
      expect(await readOriginProgress(database.pool, origin)).toBe(0x40n);

      // A delete by key, and a statement without a name (inlined).
      const partial: Statement = table.partialUpdate({ id: "2", a: "partial", b$1: "$2" }, { id: "2" });
      expect(partial.name).toBeUndefined();
      await target.apply([table.deleteByKey(row(["1"]))], {
        lsn: 0x50n,
        commitTimeIso: new Date().toISOString(),
      });
      await target.apply([table.deleteByKey(row(["3"])), partial], {
        lsn: 0x60n,
        commitTimeIso: new Date().toISOString(),
      });
      const { rows: left } = await database.pool.query(`select id, a, "b$1" as b, d from items`);
      expect(left).toEqual([{ id: "2", a: "partial", b: "$2", d: "$1 $2" }]);
      expect(await readOriginProgress(database.pool, origin)).toBe(0x60n);

      // Large values go the pipelined way.
      const big = table.upsert(row(["4", "x".repeat(ONE_MESSAGE_MAX_VALUE_CHARS + 1)]));
      expect(oneMessageTransactionSql(client, [big], "commit")).toBeNull();
    } finally {
      await target.close();
      await database.pool.query(
        `select pg_replication_origin_drop(roname) from pg_replication_origin where roname = '${origin}'`,
      );
    }
  });

  it("fails whole at a bad statement: nothing written, the origin left where it was", {
    timeout: 60_000,
  }, async () => {
    await database.pool.query("truncate items");
    const origin = "shardshift_one_message_test_t1";
    const target = await TargetApplier.open({ url: database.url, ordinal: 1, origin });
    const insert = (id: string, h: string): Statement => ({
      name: "one_message_insert",
      text: "insert into items (id, h) values ($1::bigint, $2::numeric(12,4))",
      values: [id, h],
    });
    try {
      const client = (target as unknown as { client: pg.ClientBase }).client;
      await target.apply([insert("1", "1")], { lsn: 0x100n, commitTimeIso: new Date().toISOString() });
      const batch = [insert("2", "2"), insert("3", "not a number")];
      expect(oneMessageTransactionSql(client, batch, "commit")).not.toBeNull();
      await expect(
        target.apply(batch, { lsn: 0x200n, commitTimeIso: new Date().toISOString() }, {}),
      ).rejects.toThrow(/invalid input syntax/);
      expect((await database.pool.query("select id from items order by id")).rows).toEqual([{ id: "1" }]);
      expect(await readOriginProgress(database.pool, origin)).toBe(0x100n);
      // The session is usable again.
      await target.apply([insert("4", "4")], { lsn: 0x300n, commitTimeIso: new Date().toISOString() });
      expect(await readOriginProgress(database.pool, origin)).toBe(0x300n);
    } finally {
      await target.close();
      await database.pool.query(
        `select pg_replication_origin_drop(roname) from pg_replication_origin where roname = '${origin}'`,
      );
    }
  });
});
