// Loop safety for two-way CDC: what our appliers write carries their replication origin, so a
// stream on the same server started with origin 'none' (the reverse direction's) does not send it
// back — and still sends the application's own writes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import type { TableInfo } from "../analysis/introspect";
import { tableApplier } from "./apply";
import { applyOriginName, dropSlotOriginsSql } from "./apply-origin";
import { type CommittedTransaction, ReplicationStream } from "./replication-stream";
import { createPublication, createSlot, dropSlot } from "./slot";
import { TargetApplier } from "./target-applier";

let server: TestDatabase;
const slot = `loop_${process.pid}`;
const table: TableInfo = {
  schema: "public",
  name: "items",
  qualified: '"public"."items"',
  kind: "reference",
  columns: [
    {
      name: "id",
      type: "integer",
      typeOid: 23,
      notNull: true,
      defaultExpr: null,
      identity: null,
      generatedExpr: null,
    },
    {
      name: "who",
      type: "text",
      typeOid: 25,
      notNull: false,
      defaultExpr: null,
      identity: null,
      generatedExpr: null,
    },
  ],
  primaryKey: ["id"],
  replicaIdentity: "default",
  indexes: [],
  foreignKeys: [],
  sequences: [],
  estimatedRows: 0,
};

beforeAll(async () => {
  server = await createTestDatabase("loop_a");
  await server.pool.query("create table items (id int primary key, who text)");
  await createPublication(server.pool, "loop_pub", [{ schema: "public", table: "items" }]);
  await createSlot(server.pool, slot);
});

afterAll(async () => {
  await dropSlot(server.pool, slot, { terminateActive: true }).catch(() => {});
  const drop = dropSlotOriginsSql("forward");
  await server.pool.query(drop.text, drop.values).catch(() => {});
  await server.drop();
});

async function readUntil(stream: ReplicationStream, done: (tx: CommittedTransaction) => boolean) {
  const seen: CommittedTransaction[] = [];
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const batch = await stream.readBatch({ idleTimeoutMs: 500 });
    if (!batch) break;
    seen.push(...batch.transactions);
    if (batch.transactions.some(done)) return seen;
  }
  throw new Error("the application's write never arrived on the stream");
}

describe("origin 'none' on a server our appliers write to", () => {
  it("does not stream back what an applier wrote, and streams the application's writes", {
    timeout: 30_000,
  }, async () => {
    const applier = await TargetApplier.open({
      url: server.url,
      ordinal: 0,
      origin: applyOriginName("forward", 1n, 0),
    });
    try {
      const upsert = tableApplier(table).upsert;
      await applier.apply([upsert({ id: "1", who: "applier" })], {
        lsn: 1_000n,
        commitTimeIso: new Date().toISOString(),
      });
      await applier.apply([upsert({ id: "2", who: "applier" }), upsert({ id: "3", who: "applier" })], {
        lsn: 2_000n,
        commitTimeIso: new Date().toISOString(),
      });
    } finally {
      await applier.close();
    }
    await server.pool.query("insert into items values (10, 'application')");

    const reverse = await ReplicationStream.start({
      connectionString: server.url,
      slot,
      publications: ["loop_pub"],
      origin: "none",
    });
    try {
      const seen = await readUntil(reverse, (tx) => tx.changes.some((c) => c.kind === "insert"));
      const rows = seen.flatMap((tx) => tx.changes.flatMap((c) => (c.kind === "insert" ? [c.new] : [])));
      expect(rows).toEqual([{ id: "10", who: "application" }]);
    } finally {
      await reverse.stop();
    }
  });
});
