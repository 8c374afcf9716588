// Adversarial (h-break), held: the new owner's sequences are set (setval) just before the flip; if
// that were not durable, a crash of the new owner right after would bring a sequence back to its old
// value and the tenant's next inserts would collide with ids its rows already have. It is durable:
// setval on a WAL-logged sequence takes a transaction id (sequence.c), so the statement's commit
// flushes the WAL under synchronous_commit = on (the engine's sessions do not turn it off). The WAL
// writer is slowed here (10 s) so only that commit's flush can have saved the value.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDatabase } from "../../embedded/embedded-server";
import { type CrashableServer, startCrashableServer } from "../../testing/crashable-server";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { advanceSequences, SEQUENCE_HEADROOM, shardedSequences } from "./sequences";

let oldOwner: TestDatabase;
let server: CrashableServer;
let newOwner: pg.Pool;
const DDL =
  "create table events (tenant_id bigint not null, id bigserial not null, primary key (tenant_id, id))";

beforeAll(async () => {
  oldOwner = await createTestDatabase("seqcrash_old");
  server = await startCrashableServer("seqcrash-new", 5);
  await ensureDatabase(server.url(), "app");
  const admin = new pg.Client({ connectionString: server.url() });
  await admin.connect();
  await admin.query("alter system set wal_writer_delay = '10s'");
  await admin.query("alter system set wal_writer_flush_after = '1GB'");
  await admin.query("select pg_reload_conf()");
  await admin.end();
  newOwner = new pg.Pool({ connectionString: server.url("app") });
  newOwner.on("error", () => {});
  await newOwner.query(DDL);
  await oldOwner.pool.query(DDL);
  await oldOwner.pool.query("insert into events (tenant_id) select 7 from generate_series(1, 5000)");
}, 120_000);

afterAll(async () => {
  await newOwner?.end().catch(() => {});
  await server?.stop();
  await oldOwner?.drop();
});

describe("the new owner's sequences at a cutover", () => {
  it("stay set past the old owner's ids when the new owner crashes right after", async () => {
    const tables = [{ qualified: '"public"."events"', kind: "sharded" as const }];
    const sequences = await shardedSequences(oldOwner.pool, tables);
    expect(sequences).toEqual(["public.events_id_seq"]);
    const [bump] = await advanceSequences(oldOwner.pool, newOwner, sequences);
    expect(bump?.newOwner).toBe(5_000n + SEQUENCE_HEADROOM);

    await server.crash();
    await server.restart();
    // The tenant's first insert on its new owner after the crash: past every id it already has.
    const { rows } = await newOwner.query<{ id: string }>(
      "insert into events (tenant_id) values (7) returning id::text",
    );
    expect(BigInt(rows[0]?.id ?? "0")).toBeGreaterThan(5_000n + SEQUENCE_HEADROOM);
  });
});
