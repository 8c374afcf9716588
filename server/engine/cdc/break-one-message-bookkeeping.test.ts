// Break pass on the prepared-statement bookkeeping the one-message apply relies on (isParsedOn,
// one-sync-transaction.ts): statements the server lost, a failure followed by reuse, and one name
// given two different texts.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import type { Statement } from "./apply";
import { oneMessageTransactionSql } from "./one-message-transaction";
import { readOriginProgress, TargetApplier } from "./target-applier";

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase("break_one_message_books");
  await database.pool.query(`create table items (id bigint primary key, v text not null);
    create table other (id bigint primary key, w text not null)`);
});

afterAll(async () => {
  await database?.drop();
});

const insert = (id: number, v: string, name = "books_insert"): Statement => ({
  name,
  text: "insert into items (id, v) values ($1::bigint, $2::text)",
  values: [String(id), v],
});
const stamp = (lsn: bigint) => ({ lsn, commitTimeIso: new Date().toISOString() });
const ids = async (table: string) =>
  (await database.pool.query(`select id from ${table} order by id`)).rows.map((r) => Number(r.id));

async function withTarget(origin: string, run: (target: TargetApplier, client: pg.Client) => Promise<void>) {
  const target = await TargetApplier.open({ url: database.url, ordinal: 0, origin });
  try {
    await run(target, target.connection);
  } finally {
    await target.close();
  }
}

async function dropOrigin(origin: string) {
  await database.pool.query(
    `select pg_replication_origin_drop(roname) from pg_replication_origin where roname = '${origin}'`,
  );
}

describe("prepared-statement bookkeeping under the one-message apply", () => {
  it("statements the server lost (DEALLOCATE ALL): a clear error, nothing written, the origin unmoved", {
    timeout: 60_000,
  }, async () => {
    await database.pool.query("truncate items, other");
    const origin = "shardshift_books_t0";
    try {
      await withTarget(origin, async (target, client) => {
        await target.apply([insert(1, "a")], stamp(0x100n));
        await client.query("deallocate all");
        expect(oneMessageTransactionSql(client, [insert(2, "b")], "commit")).not.toBeNull();
        await expect(target.apply([insert(2, "b"), insert(3, "c")], stamp(0x200n))).rejects.toThrow(
          /prepared statement .* does not exist/,
        );
        expect(await ids("items")).toEqual([1]);
        expect(await readOriginProgress(database.pool, origin)).toBe(0x100n);
      });
      // The composition restarts with new sessions: the batch applies.
      await withTarget(origin, async (target) => {
        expect(target.appliedUpTo).toBe(0x100n);
        await target.apply([insert(2, "b"), insert(3, "c")], stamp(0x200n));
        await target.apply([insert(4, "d")], stamp(0x300n));
        expect(await ids("items")).toEqual([1, 2, 3, 4]);
        expect(await readOriginProgress(database.pool, origin)).toBe(0x300n);
      });
    } finally {
      await dropOrigin(origin);
    }
  });

  it("a failure at a statement's first use, then reuse: parsed again, never executed unparsed", {
    timeout: 60_000,
  }, async () => {
    await database.pool.query("truncate items, other");
    const origin = "shardshift_books_t1";
    try {
      await withTarget(origin, async (target, client) => {
        await target.apply([insert(1, "a")], stamp(0x100n));
        // First use of "books_fresh" fails at its Execute (the key exists): its name is unsure.
        const fresh = (id: number, v: string) => insert(id, v, "books_fresh");
        await expect(target.apply([insert(2, "b"), fresh(1, "dup")], stamp(0x200n))).rejects.toThrow(
          /duplicate key/,
        );
        expect(oneMessageTransactionSql(client, [fresh(3, "c")], "commit")).toBeNull();
        // First use fails at its Parse (a bad text): nothing recorded as parsed.
        const bad: Statement = { name: "books_bad", text: "insert into nowhere values ($1)", values: ["1"] };
        await expect(target.apply([insert(2, "b"), bad], stamp(0x200n))).rejects.toThrow(/nowhere/);
        expect(oneMessageTransactionSql(client, [bad], "commit")).toBeNull();
        expect(await ids("items")).toEqual([1]);
        expect(await readOriginProgress(database.pool, origin)).toBe(0x100n);
        // Reuse: the unsure statement is closed and parsed again, then goes as one message.
        await target.apply([insert(2, "b"), fresh(3, "c")], stamp(0x200n));
        expect(oneMessageTransactionSql(client, [fresh(4, "d")], "commit")).not.toBeNull();
        // A one-message failure (the key exists) and reuse of the same statements at once.
        await expect(target.apply([fresh(4, "d"), fresh(3, "again")], stamp(0x300n))).rejects.toThrow(
          /duplicate key/,
        );
        expect(await readOriginProgress(database.pool, origin)).toBe(0x200n);
        await target.apply([fresh(4, "d"), insert(5, "e")], stamp(0x300n));
        expect(await ids("items")).toEqual([1, 2, 3, 4, 5]);
        expect(await readOriginProgress(database.pool, origin)).toBe(0x300n);
      });
    } finally {
      await dropOrigin(origin);
    }
  });

  it("one name, two texts: never runs the other text's statement with these values", {
    timeout: 60_000,
  }, async () => {
    await database.pool.query("truncate items, other");
    const origin = "shardshift_books_t2";
    try {
      await withTarget(origin, async (target) => {
        await target.apply([insert(1, "a", "books_same")], stamp(0x100n));
        const intoOther: Statement = {
          name: "books_same",
          text: "insert into other (id, w) values ($1::bigint, $2::text)",
          values: ["7", "w"],
        };
        // Either refused or written where its text says: never into items.
        const outcome = await target.apply([intoOther], stamp(0x200n)).then(
          () => "applied",
          (e: Error) => e.message,
        );
        // Before the fix: "applied", and the row meant for `other` was written into items.
        expect(await ids("items"), `outcome: ${outcome}`).toEqual([1]);
        expect(outcome).toMatch(/must be unique/);
        expect(await ids("other")).toEqual([]);
        expect(await readOriginProgress(database.pool, origin)).toBe(0x100n);
        // The session is usable.
        await target.apply([insert(2, "b", "books_same")], stamp(0x200n));
        expect(await ids("items")).toEqual([1, 2]);
      });
    } finally {
      await dropOrigin(origin);
    }
  });
});
