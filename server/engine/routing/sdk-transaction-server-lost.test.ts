// Found by h-break (a shard's PostgreSQL crashed under SDK writes): a transaction's client is
// checked out of the pool, and pg-pool removes its idle 'error' listener for that time. When the
// server goes away mid-transaction, pg emits 'error' on the client as well as failing the pending
// query — with no listener, that is an uncaught exception that kills the application's process.
// The transaction must fail with the connection error instead, and the router keep working.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRouter, legacyOnlyMap, staticMapSource } from "../../../sdk";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase("sdk_lost");
  await database.pool.query("create table items (tenant_id bigint not null, v int)");
});

afterAll(async () => {
  await database?.drop();
});

describe("a router transaction whose server connection dies", () => {
  it("fails the transaction (no uncaught error) and the next one works", async () => {
    const router = await createRouter({
      databases: { legacy: database.pool },
      map: staticMapSource(legacyOnlyMap("legacy")),
    });
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on("uncaughtException", onUncaught);
    try {
      const outcome = await router
        .forTenant("1")
        .transaction(async (tx) => {
          await tx.query("insert into items values (1, 1)");
          const { rows } = await tx.query<{ pid: number }>("select pg_backend_pid() as pid");
          // The server ends this session between two statements (as a crash or restart does).
          await database.pool.query("select pg_terminate_backend($1)", [rows[0]?.pid]);
          await new Promise((r) => setTimeout(r, 200)); // the socket's end reaches the client
          await tx.query("insert into items values (1, 2)");
        })
        .then(
          () => "committed",
          (error: Error) => error.message,
        );
      expect(outcome).toMatch(/terminat|connection/i);
      expect(uncaught).toEqual([]);
      await router.forTenant("1").transaction((tx) => tx.query("insert into items values (1, 3)"));
      const { rows } = await database.pool.query("select v from items order by v");
      expect(rows.map((r) => r.v)).toEqual([3]);
    } finally {
      process.off("uncaughtException", onUncaught);
      await router.close();
    }
  });
});
