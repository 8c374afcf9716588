// Statements under one Sync are one transaction: all of them commit, or none (a failure anywhere
// rolls back the earlier ones), and the connection's record of its prepared statements stays right
// after failures at a statement's parse or its execution, so the next use neither re-parses a name
// the server holds nor binds one it does not.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { runInOneSync } from "./one-sync-transaction";

let database: TestDatabase;
let client: pg.Client;

beforeAll(async () => {
  database = await createTestDatabase("one_sync");
  await database.pool.query("create table t (id int primary key, v text)");
  client = new pg.Client({ connectionString: database.url, pipeline: true } as pg.ClientConfig);
  await client.connect();
});

afterAll(async () => {
  await client?.end();
  await database?.drop();
});

const insert = (id: number, v: string) => ({
  name: "one_sync_insert",
  text: "insert into t (id, v) values ($1::int, $2::text)",
  values: [String(id), v],
});
const tagged = (ids: number[]) => ({
  name: "one_sync_tag",
  text: "update t set v = 'tagged' where id = any($1::int[])",
  values: [ids.map(String)],
});

async function rows(): Promise<{ id: number; v: string }[]> {
  return (await database.pool.query("select id, v from t order by id")).rows;
}

describe("runInOneSync", () => {
  it("commits every statement together, arrays bound as pg binds them", async () => {
    await runInOneSync(client, [insert(1, "a"), insert(2, "b"), tagged([2])]);
    expect(await rows()).toEqual([
      { id: 1, v: "a" },
      { id: 2, v: "tagged" },
    ]);
  });

  it("rolls back every statement when one fails, and skips the ones after it", async () => {
    // The duplicate key fails at execution; the tag after it is never run.
    await expect(runInOneSync(client, [insert(3, "c"), insert(1, "dup"), tagged([3])])).rejects.toMatchObject(
      {
        code: "23505",
      },
    );
    expect(await rows()).toEqual([
      { id: 1, v: "a" },
      { id: 2, v: "tagged" },
    ]);
    // The connection works on, with the same prepared statements.
    await runInOneSync(client, [insert(3, "c"), tagged([1, 3])]);
    expect((await rows()).map((r) => r.v)).toEqual(["tagged", "tagged", "tagged"]);
  });

  it("keeps prepared statements right when a statement fails at parse or after its first parse", async () => {
    const fresh = (id: number) => ({
      name: "one_sync_fresh",
      text: "insert into t (id, v) values ($1::int, 'fresh')",
      values: [String(id)],
    });
    const after = {
      name: "one_sync_after",
      text: "update t set v = 'after' where id = 10",
      values: [],
    };
    // Parsed here for the first time and failing at execution (duplicate key): the name exists on
    // the server; the statement after it was never parsed.
    await expect(runInOneSync(client, [fresh(1), after])).rejects.toMatchObject({ code: "23505" });
    await runInOneSync(client, [fresh(10), after]);
    // A statement that fails at parse (no such table) leaves nothing behind under its name.
    const broken = { name: "one_sync_broken", text: "insert into missing values (1)", values: [] };
    await expect(runInOneSync(client, [broken])).rejects.toMatchObject({ code: "42P01" });
    await database.pool.query("create table missing (id int)");
    await runInOneSync(client, [broken, fresh(11)]);
    expect((await rows()).filter((r) => r.id >= 10)).toEqual([
      { id: 10, v: "after" },
      { id: 11, v: "fresh" },
    ]);
    expect((await database.pool.query("select count(*)::int n from missing")).rows[0].n).toBe(1);
  });

  it("shares the pipeline with ordinary queries", async () => {
    const [, sync, count] = await Promise.all([
      client.query("select 1"),
      runInOneSync(client, [insert(20, "x")]),
      client.query("select count(*)::int as n from t where id = 20"),
    ]);
    expect(sync).toBeUndefined();
    expect(count.rows[0].n).toBe(1);
  });
});
