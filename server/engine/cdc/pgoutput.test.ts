// pgoutput decoding against a real PostgreSQL server: the bytes come from a real slot, so these tests
// pin down what the server actually sends (TOAST markers, replica identities, text renderings).
import crypto from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "@/server/testing/databases";
import {
  type Change,
  PgoutputDecoder,
  PgoutputProtocolError,
  pgTimestampToIso,
  type Relation,
  UNCHANGED_TOAST,
} from "./pgoutput";
import { type CommittedTransaction, ReplicationStream } from "./replication-stream";
import { createPublication, createSlot, dropSlot, listSlots, parseLsn } from "./slot";

// Slots are per server, not per database: a unique prefix per run, and every slot dropped.
const SLOT_PREFIX = `cdc_test_pgout_${crypto.randomBytes(3).toString("hex")}_`;
const PUBLICATION = "cdc_test_pub";
const BIG_BODY = "0123456789abcdef".repeat(6400); // 100 kB
const TYPE = { int4: 23, int8: 20, text: 25, timestamptz: 1184, jsonb: 3802, numeric: 1700 } as const;

let database: TestDatabase;
const streams: ReplicationStream[] = [];
const slots: string[] = [];

beforeAll(async () => {
  database = await createTestDatabase("cdc_pgoutput");
  await database.pool.query(`
    create table docs (
      id bigint primary key,
      title text not null,
      body text,
      updated_at timestamptz,
      meta jsonb,
      price numeric(12, 4),
      amount numeric
    );
    -- EXTERNAL: stored out of line without compression, so a 100 kB value is certainly TOASTed.
    alter table docs alter column body set storage external;
    create table memberships (
      tenant_id int not null,
      user_id int not null,
      role text not null,
      primary key (tenant_id, user_id)
    );
    create table audit_log (tenant_id int, note text, at timestamptz);
    alter table audit_log replica identity full;
  `);
  await createPublication(database.pool, PUBLICATION, [
    { schema: "public", table: "docs" },
    { schema: "public", table: "memberships" },
    { schema: "public", table: "audit_log" },
  ]);
});

afterEach(async () => {
  await Promise.all(streams.splice(0).map((stream) => stream.stop()));
  for (const slot of slots.splice(0)) await dropSlot(database.pool, slot, { terminateActive: true });
});

afterAll(async () => {
  const leaked = database ? await listSlots(database.pool, SLOT_PREFIX) : [];
  await database?.drop();
  expect(leaked.map((s) => s.slot)).toEqual([]);
});

async function newSlot(name: string): Promise<string> {
  const slot = `${SLOT_PREFIX}${name}`;
  slots.push(slot);
  await createSlot(database.pool, slot);
  return slot;
}

async function startStream(slot: string): Promise<ReplicationStream> {
  const stream = await ReplicationStream.start({
    connectionString: database.url,
    slot,
    publications: [PUBLICATION],
  });
  streams.push(stream);
  return stream;
}

/** Reads until `count` transactions arrived, or fails after the deadline. */
async function readTransactions(
  stream: ReplicationStream,
  count: number,
  timeoutMs = 15_000,
): Promise<CommittedTransaction[]> {
  const deadline = Date.now() + timeoutMs;
  const transactions: CommittedTransaction[] = [];
  while (transactions.length < count) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms: got ${transactions.length} of ${count} transactions`);
    }
    const batch = await stream.readBatch({ maxWaitMs: 20, idleTimeoutMs: 250 });
    if (batch === null) throw new Error("the stream stopped");
    transactions.push(...batch.transactions);
  }
  expect(transactions).toHaveLength(count);
  return transactions;
}

/** Runs statements in one transaction; returns what the last one selected. */
async function inTransaction(...statements: string[]): Promise<Record<string, unknown>[]> {
  const client = await database.pool.connect();
  try {
    await client.query("begin");
    let rows: Record<string, unknown>[] = [];
    for (const statement of statements) rows = (await client.query(statement)).rows;
    await client.query("commit");
    return rows;
  } finally {
    client.release();
  }
}

const tableOf = (relation: Relation) => `${relation.schema}.${relation.table}`;

function summarize(change: Change): Record<string, unknown> {
  switch (change.kind) {
    case "insert":
      return { kind: "insert", table: tableOf(change.relation), new: change.new };
    case "update":
      return { kind: "update", table: tableOf(change.relation), old: change.old, new: change.new };
    case "delete":
      return { kind: "delete", table: tableOf(change.relation), old: change.old };
    case "truncate":
      return {
        kind: "truncate",
        tables: change.relations.map(tableOf),
        cascade: change.cascade,
        restartIdentity: change.restartIdentity,
      };
    case "message":
      return { kind: "message", prefix: change.prefix, content: change.content.toString("utf8") };
  }
}

describe("pgoutput decoding (real server)", () => {
  it("decodes every change as the server's text, with TOAST markers and old rows per replica identity", async () => {
    const slot = await newSlot("kinds");

    // T1: inserts into all three tables; also note the server's clock to check commitTime's unit.
    const [clock] = await inTransaction(
      `insert into docs values (1, 'first', '${BIG_BODY}', '2026-01-02 03:04:05.123456+00',
         '{"b": [true, null], "a": 1}', 1.5, 12345678901234567890.123456789)`,
      "insert into memberships values (1, 10, 'admin'), (1, 11, 'viewer')",
      "insert into audit_log values (1, 'created', '2026-01-02 03:04:05+00')",
      `select ((extract(epoch from now()) * 1000000)::bigint - 946684800000000)::text as started_micros`,
    );
    // T2: an UPDATE that does not touch the TOASTed body.
    await inTransaction("update docs set title = 'renamed' where id = 1");
    // T3: a composite key change (old key sent), then a non-key change (no old key needed).
    await inTransaction(
      "update memberships set user_id = 12 where tenant_id = 1 and user_id = 11",
      "update memberships set role = 'owner' where tenant_id = 1 and user_id = 10",
    );
    // T4: REPLICA IDENTITY FULL sends whole old rows; the default identity sends the key only.
    await inTransaction(
      "update audit_log set note = 'edited' where tenant_id = 1",
      "delete from audit_log where tenant_id = 1",
      "delete from docs where id = 1",
    );
    // T5
    await inTransaction("truncate memberships restart identity");

    const stream = await startStream(slot);
    const transactions = await readTransactions(stream, 5);

    expect(transactions.map((tx) => tx.changes.map(summarize))).toEqual([
      [
        {
          kind: "insert",
          table: "public.docs",
          new: {
            id: "1",
            title: "first",
            body: BIG_BODY,
            updated_at: "2026-01-02 03:04:05.123456+00",
            meta: '{"a": 1, "b": [true, null]}',
            price: "1.5000",
            amount: "12345678901234567890.123456789",
          },
        },
        {
          kind: "insert",
          table: "public.memberships",
          new: { tenant_id: "1", user_id: "10", role: "admin" },
        },
        {
          kind: "insert",
          table: "public.memberships",
          new: { tenant_id: "1", user_id: "11", role: "viewer" },
        },
        {
          kind: "insert",
          table: "public.audit_log",
          new: { tenant_id: "1", note: "created", at: "2026-01-02 03:04:05+00" },
        },
      ],
      [
        {
          kind: "update",
          table: "public.docs",
          old: null,
          new: {
            id: "1",
            title: "renamed",
            body: UNCHANGED_TOAST,
            updated_at: "2026-01-02 03:04:05.123456+00",
            meta: '{"a": 1, "b": [true, null]}',
            price: "1.5000",
            amount: "12345678901234567890.123456789",
          },
        },
      ],
      [
        {
          kind: "update",
          table: "public.memberships",
          old: { kind: "key", tuple: { tenant_id: "1", user_id: "11" } },
          new: { tenant_id: "1", user_id: "12", role: "viewer" },
        },
        {
          kind: "update",
          table: "public.memberships",
          old: null,
          new: { tenant_id: "1", user_id: "10", role: "owner" },
        },
      ],
      [
        {
          kind: "update",
          table: "public.audit_log",
          old: { kind: "full", tuple: { tenant_id: "1", note: "created", at: "2026-01-02 03:04:05+00" } },
          new: { tenant_id: "1", note: "edited", at: "2026-01-02 03:04:05+00" },
        },
        {
          kind: "delete",
          table: "public.audit_log",
          old: { kind: "full", tuple: { tenant_id: "1", note: "edited", at: "2026-01-02 03:04:05+00" } },
        },
        { kind: "delete", table: "public.docs", old: { kind: "key", tuple: { id: "1" } } },
      ],
      [{ kind: "truncate", tables: ["public.memberships"], cascade: false, restartIdentity: true }],
    ]);

    // The unchanged TOAST value is a marker, never a NULL that apply would write.
    const toastUpdate = transactions[1]?.changes[0];
    expect(toastUpdate?.kind === "update" && toastUpdate.new.body).toBe(UNCHANGED_TOAST);
    expect(toastUpdate?.kind === "update" && toastUpdate.new.body === null).toBe(false);

    // Relation metadata: schema, table, identity, and per column type OID, typmod and key flag.
    const relations = new Map<string, Relation>();
    for (const tx of transactions) {
      for (const change of tx.changes) {
        if (change.kind !== "truncate" && change.kind !== "message")
          relations.set(tableOf(change.relation), change.relation);
      }
    }
    expect(relations.get("public.docs")).toMatchObject({
      schema: "public",
      table: "docs",
      replicaIdentity: "default",
      columns: [
        { name: "id", typeOid: TYPE.int8, typeMod: -1, isKey: true },
        { name: "title", typeOid: TYPE.text, typeMod: -1, isKey: false },
        { name: "body", typeOid: TYPE.text, typeMod: -1, isKey: false },
        { name: "updated_at", typeOid: TYPE.timestamptz, typeMod: -1, isKey: false },
        { name: "meta", typeOid: TYPE.jsonb, typeMod: -1, isKey: false },
        // numeric(12, 4): ((12 << 16) | 4) + 4
        { name: "price", typeOid: TYPE.numeric, typeMod: (12 << 16) + 4 + 4, isKey: false },
        { name: "amount", typeOid: TYPE.numeric, typeMod: -1, isKey: false },
      ],
    });
    expect(relations.get("public.memberships")?.columns.map((c) => [c.name, c.isKey])).toEqual([
      ["tenant_id", true],
      ["user_id", true],
      ["role", false],
    ]);
    // With FULL every column identifies the row.
    expect(relations.get("public.audit_log")).toMatchObject({
      replicaIdentity: "full",
      columns: [
        { name: "tenant_id", typeOid: TYPE.int4, isKey: true },
        { name: "note", typeOid: TYPE.text, isKey: true },
        { name: "at", typeOid: TYPE.timestamptz, isKey: true },
      ],
    });
    const truncate = transactions[4]?.changes[0];
    expect(truncate?.kind === "truncate" && truncate.relations[0]).toBe(relations.get("public.memberships"));

    // Transaction boundaries: commit order, LSNs that only grow, microsecond commit times.
    const xids = transactions.map((tx) => tx.xid);
    expect(xids).toEqual([...xids].sort((a, b) => a - b));
    expect(new Set(xids).size).toBe(5);
    for (const [i, tx] of transactions.entries()) {
      expect(tx.endLsn).toBeGreaterThan(tx.commitLsn);
      expect(tx.origin).toBeNull();
      expect(tx.relationChanges).toEqual([]);
      const previous = transactions[i - 1];
      if (previous) {
        expect(tx.commitLsn).toBeGreaterThanOrEqual(previous.endLsn);
        expect(tx.commitTime).toBeGreaterThanOrEqual(previous.commitTime);
      }
    }
    const startedMicros = BigInt(String(clock?.started_micros));
    const firstCommit = transactions[0]?.commitTime ?? 0n;
    expect(firstCommit).toBeGreaterThanOrEqual(startedMicros);
    expect(firstCommit - startedMicros).toBeLessThan(10_000_000n); // microseconds: under 10 s
    expect(pgTimestampToIso(firstCommit)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  });

  it("signals a relation whose columns changed mid-stream, and only then", async () => {
    const slot = await newSlot("relchange");
    const stream = await startStream(slot);

    await inTransaction("insert into memberships values (2, 20, 'admin')");
    // A storage parameter change re-sends the Relation message with identical columns: no signal.
    await inTransaction("alter table memberships set (fillfactor = 90)");
    await inTransaction("insert into memberships values (2, 21, 'viewer')");
    await inTransaction("alter table memberships add column note text");
    await inTransaction("insert into memberships values (2, 22, 'viewer', 'new column')");

    const [first, second, third] = await readTransactions(stream, 3);
    expect(first?.relationChanges).toEqual([]);
    expect(second?.relationChanges).toEqual([]);
    expect(third?.relationChanges).toHaveLength(1);
    const change = third?.relationChanges[0];
    expect(change?.previous.columns.map((c) => c.name)).toEqual(["tenant_id", "user_id", "role"]);
    expect(change?.current.columns.map((c) => c.name)).toEqual(["tenant_id", "user_id", "role", "note"]);
    expect(third?.changes.map(summarize)).toEqual([
      {
        kind: "insert",
        table: "public.memberships",
        new: { tenant_id: "2", user_id: "22", role: "viewer", note: "new column" },
      },
    ]);
    await database.pool.query("alter table memberships drop column note; truncate memberships");
  });

  it("delivers a transactional logical message at its place among the transaction's changes, and leaves out non-transactional ones", async () => {
    const slot = await newSlot("messages");
    const stream = await startStream(slot);

    await database.pool.query(
      "select pg_logical_emit_message(false, 'shardshift_fence', 'not in any transaction')",
    );
    const [emitted] = await inTransaction(
      "insert into memberships values (3, 30, 'admin')",
      "select pg_logical_emit_message(true, 'shardshift_fence', '{\"planId\":\"p\"}')::text as lsn",
    );
    await inTransaction(
      "insert into memberships values (3, 31, 'viewer')",
      "select pg_logical_emit_message(true, 'other_prefix', 'x')",
    );

    const [first, second] = await readTransactions(stream, 2);
    expect(first?.changes.map(summarize)).toEqual([
      { kind: "insert", table: "public.memberships", new: { tenant_id: "3", user_id: "30", role: "admin" } },
      { kind: "message", prefix: "shardshift_fence", content: '{"planId":"p"}' },
    ]);
    // The message's own position (the end of its record, as pg_logical_emit_message returned it):
    // at or before the transaction's commit record.
    const message = first?.changes[1];
    expect(message?.kind === "message" && message.lsn).toBe(parseLsn(String(emitted?.lsn)));
    expect(message?.kind === "message" && message.lsn <= (first?.commitLsn ?? 0n)).toBe(true);
    expect(second?.changes.map((c) => c.kind)).toEqual(["insert", "message"]);
    await database.pool.query("truncate memberships");
  });
});

describe("pgoutput decoder (pure)", () => {
  const relationMessage = Buffer.concat([
    Buffer.from("R"),
    Buffer.from([0, 0, 0x40, 0x01]), // relation id 16385
    Buffer.from("public\0t\0"),
    Buffer.from("d"),
    Buffer.from([0, 2]),
    Buffer.from([1]),
    Buffer.from("id\0"),
    Buffer.from([0, 0, 0, 23, 0xff, 0xff, 0xff, 0xff]),
    Buffer.from([0]),
    Buffer.from("body\0"),
    Buffer.from([0, 0, 0, 25, 0xff, 0xff, 0xff, 0xff]),
  ]);

  it("keeps 'u' apart from 'n' in a tuple", () => {
    const decoder = new PgoutputDecoder();
    expect(decoder.decode(relationMessage)).toMatchObject({ tag: "relation", previous: null });
    const update = Buffer.concat([
      Buffer.from("U"),
      Buffer.from([0, 0, 0x40, 0x01]),
      Buffer.from("N"),
      Buffer.from([0, 2]),
      Buffer.from("t"),
      Buffer.from([0, 0, 0, 1]),
      Buffer.from("7"),
      Buffer.from("u"),
    ]);
    const decoded = decoder.decode(update);
    expect(decoded.tag === "change" && decoded.change.kind === "update" && decoded.change.new).toEqual({
      id: "7",
      body: UNCHANGED_TOAST,
    });
    const withNull = Buffer.concat([update.subarray(0, update.length - 1), Buffer.from("n")]);
    const decodedNull = decoder.decode(withNull);
    expect(
      decodedNull.tag === "change" && decodedNull.change.kind === "update" && decodedNull.change.new,
    ).toEqual({ id: "7", body: null });
  });

  it("decodes a logical message: flags, position, prefix and content", () => {
    const content = Buffer.from('{"version":7}');
    const length = Buffer.alloc(4);
    length.writeInt32BE(content.length);
    const message = (flags: number) =>
      Buffer.concat([
        Buffer.from("M"),
        Buffer.from([flags]),
        Buffer.from([0, 0, 0, 1, 0x0a, 0x0b, 0x0c, 0x0d]), // 1/A0B0C0D
        Buffer.from("shardshift_fence\0"),
        length,
        content,
      ]);
    const decoder = new PgoutputDecoder();
    expect(decoder.decode(message(1))).toEqual({
      tag: "message",
      transactional: true,
      lsn: 0x1_0a0b_0c0dn,
      prefix: "shardshift_fence",
      content,
    });
    expect(decoder.decode(message(0))).toMatchObject({ tag: "message", transactional: false });
    // A content shorter than its announced length is refused, not read past.
    expect(() => decoder.decode(message(1).subarray(0, -1))).toThrow(/ended early/);
  });

  it("refuses what it cannot decode instead of skipping it", () => {
    const decoder = new PgoutputDecoder();
    expect(() => decoder.decode(Buffer.from("S"))).toThrow(PgoutputProtocolError);
    expect(() => decoder.decode(relationMessage.subarray(0, 3))).toThrow(/ended early/);
    // A change for a relation the stream never announced.
    expect(() => decoder.decode(Buffer.from([0x49, 0, 0, 0x40, 0x01, 0x4e, 0, 0]))).toThrow(
      /before its Relation message/,
    );
  });

  it("renders commit times with all six fractional digits", () => {
    expect(pgTimestampToIso(0n)).toBe("2000-01-01T00:00:00.000000Z");
    expect(pgTimestampToIso(1n)).toBe("2000-01-01T00:00:00.000001Z");
    expect(pgTimestampToIso(-1n)).toBe("1999-12-31T23:59:59.999999Z");
    expect(pgTimestampToIso(820_638_245_123_456n)).toBe("2026-01-02T03:04:05.123456Z");
  });
});
