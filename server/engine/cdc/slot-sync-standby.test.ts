// A transaction whose commit record is written but which is not visible yet — it waits for a
// synchronous standby that never answers — when the slot is created: the slot's consistent point is
// not returned until that transaction has ended, so it is streamed by CDC or visible to every chunk
// snapshot taken after the slot (docs/backfill-correctness.md). On a server of its own
// (SLOT_SYNC_PG_PORT, default 26660): synchronous_standby_names is server-wide.
import crypto from "node:crypto";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EmbeddedServer, startEmbeddedServer } from "../../embedded/embedded-server";
import { type Change, PgoutputDecoder } from "./pgoutput";
import { createPublication, createSlot } from "./slot";

let server: EmbeddedServer;
let pool: pg.Pool;

beforeAll(async () => {
  server = await startEmbeddedServer({
    name: `slot-sync-${process.pid}`,
    port: Number(process.env.SLOT_SYNC_PG_PORT ?? 26_660),
    rootDir: path.join(os.tmpdir(), "shardshift-test"),
    password: crypto.randomBytes(12).toString("hex"),
    ephemeral: true,
  });
  pool = new pg.Pool({ connectionString: server.url(), max: 4 });
  pool.on("error", () => {});
  await pool.query(
    "create table items (tenant_id int not null, id int not null, primary key (tenant_id, id))",
  );
  await createPublication(pool, "sync_pub", [{ schema: "public", table: "items" }]);
}, 60_000);

afterAll(async () => {
  await pool?.query("alter system reset synchronous_standby_names; select pg_reload_conf()").catch(() => {});
  await pool?.end();
  await server?.stop();
});

describe("slot creation and a commit waiting on a synchronous standby", () => {
  it("neither streams nor hides it: the slot waits until it is visible", { timeout: 60_000 }, async () => {
    await pool.query("alter system set synchronous_standby_names = 'nobody'");
    await pool.query("select pg_reload_conf()");
    await delay(200);
    const writer = new pg.Client({ connectionString: server.url() });
    await writer.connect();
    writer.on("error", () => {});
    // Commit record written and flushed; the commit then waits for the standby that never answers.
    const waiting = writer.query(
      "begin; set local synchronous_commit = on; insert into items values (1, 1); commit",
    );
    await delay(300);
    const { rows: hidden } = await pool.query("select 1 from items where id = 1");
    expect(hidden).toHaveLength(0);

    let slotLsn: bigint | null = null;
    const creating = createSlot(pool, "sync_slot").then((lsn) => {
      slotLsn = lsn;
    });
    await delay(1_500);
    // The consistent point is not handed out while the transaction is still invisible.
    expect(slotLsn).toBeNull();

    await pool.query("alter system reset synchronous_standby_names");
    await pool.query("select pg_reload_conf()");
    await waiting;
    await creating;
    await writer.end();

    // A chunk snapshot taken now sees the row, or CDC streams it: one of the two, never neither.
    const visible = (await pool.query("select 1 from items where id = 1")).rows.length === 1;
    await pool.query("begin; set local synchronous_commit = on; insert into items values (2, 2); commit");
    const { rows } = await pool.query<{ data: Buffer }>(
      "select data from pg_logical_slot_peek_binary_changes('sync_slot', null, null, 'proto_version', '1', 'publication_names', 'sync_pub')",
    );
    const decoder = new PgoutputDecoder();
    const streamed: Change[] = [];
    for (const row of rows) {
      const message = decoder.decode(row.data);
      if (message.tag === "change") streamed.push(message.change);
    }
    const ids = streamed.map((c) => (c.kind === "insert" ? c.new.id : null));
    expect(ids).toContain("2");
    expect(visible || ids.includes("1")).toBe(true);
  });
});
