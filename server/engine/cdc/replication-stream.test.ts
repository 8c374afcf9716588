// The CDC source stream against a real PostgreSQL server: batching, confirmation (never automatic),
// resumption from the slot, keepalives, one consumer per slot, and clear failures.
import crypto from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "@/server/testing/databases";
import {
  type CommittedTransaction,
  ReplicationStream,
  ReplicationStreamError,
  type ReplicationStreamOptions,
} from "./replication-stream";
import {
  compareLsn,
  createPublication,
  createSlot,
  currentWalLsn,
  dropSlot,
  formatLsn,
  listSlots,
  parseLsn,
  readSlotStatus,
} from "./slot";

// Slots are per server, not per database: a unique prefix per run, and every slot dropped.
const SLOT_PREFIX = `cdc_test_stream_${crypto.randomBytes(3).toString("hex")}_`;
const PUBLICATION = "cdc_stream_pub";

let database: TestDatabase;
const streams: ReplicationStream[] = [];
const slots: string[] = [];

beforeAll(async () => {
  database = await createTestDatabase("cdc_stream");
  await database.pool.query(`
    create table items (id int primary key, tenant_id int not null, note text);
    create table unpublished (id serial primary key, note text);
  `);
  await createPublication(database.pool, PUBLICATION, [{ schema: "public", table: "items" }]);
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

async function startStream(
  slot: string,
  options: Partial<ReplicationStreamOptions> = {},
): Promise<ReplicationStream> {
  const stream = await ReplicationStream.start({
    connectionString: database.url,
    slot,
    publications: [PUBLICATION],
    ...options,
  });
  streams.push(stream);
  return stream;
}

/** Polls until `check` returns a value, or fails with `what` after the deadline. */
async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function readTransactions(
  stream: ReplicationStream,
  count: number,
  timeoutMs = 15_000,
): Promise<CommittedTransaction[]> {
  const transactions: CommittedTransaction[] = [];
  await waitFor(
    `${count} transactions (got ${transactions.length})`,
    async () => {
      const batch = await stream.readBatch({ maxWaitMs: 20, idleTimeoutMs: 200 });
      if (batch === null) throw new Error("the stream stopped");
      transactions.push(...batch.transactions);
      return transactions.length >= count ? true : undefined;
    },
    timeoutMs,
  );
  expect(transactions).toHaveLength(count);
  return transactions;
}

/** Commits one transaction inserting one item per id; returns its xid. */
async function commitItems(ids: number[]): Promise<number> {
  const client = await database.pool.connect();
  try {
    await client.query("begin");
    for (const id of ids)
      await client.query("insert into items values ($1, $2, $3)", [id, id % 7, `item ${id}`]);
    const { rows } = await client.query<{ xid: string }>("select pg_current_xact_id()::text as xid");
    await client.query("commit");
    return Number(rows[0]?.xid);
  } finally {
    client.release();
  }
}

async function confirmedFlush(slot: string): Promise<bigint | null> {
  return (await readSlotStatus(database.pool, slot))?.confirmedFlushLsn ?? null;
}

describe("replication stream (real server)", () => {
  it("delivers whole transactions in commit order, in batches the consumer sizes", async () => {
    const slot = await newSlot("batching");
    const xids: number[] = [];
    for (let i = 0; i < 5; i++) xids.push(await commitItems([i * 10 + 1, i * 10 + 2]));

    const stream = await startStream(slot);
    const limits = { maxTransactions: 2, maxWaitMs: 1_000 };
    const batches = [];
    for (let i = 0; i < 3; i++) batches.push(await stream.readBatch(limits));

    expect(batches.map((b) => b?.transactions.length)).toEqual([2, 2, 1]);
    const transactions = batches.flatMap((b) => b?.transactions ?? []);
    expect(transactions.map((tx) => tx.xid)).toEqual(xids);
    for (const [i, tx] of transactions.entries()) {
      // Boundaries: each source transaction arrives with exactly its own two rows.
      expect(tx.changes.map((c) => (c.kind === "insert" ? c.new.id : c.kind))).toEqual([
        String(i * 10 + 1),
        String(i * 10 + 2),
      ]);
      const next = transactions[i + 1];
      if (next) expect(next.commitLsn).toBeGreaterThanOrEqual(tx.endLsn);
    }
    // A batch with more transactions queued behind it confirms its last transaction and nothing of
    // the next one. (Other tests write WAL on the same server: an idle position in between may be
    // confirmed too, so this is a range, not one value.)
    for (const [batch, last] of [
      [0, 1],
      [1, 3],
    ] as const) {
      expect(batches[batch]?.confirmableLsn).toBeGreaterThanOrEqual(transactions[last]?.endLsn ?? 0n);
      expect(batches[batch]?.confirmableLsn).toBeLessThanOrEqual(transactions[last + 1]?.commitLsn ?? 0n);
    }
    expect(batches[2]?.confirmableLsn).toBeGreaterThanOrEqual(transactions[4]?.endLsn ?? 0n);

    // Confirming beyond what was delivered would skip unseen changes: refused.
    const beyond = (batches[2]?.confirmableLsn ?? 0n) + 1n;
    expect(() => stream.confirm(beyond)).toThrow(/has only delivered changes up to/);
  });

  it("resumes after the confirmed transaction: unconfirmed ones come again, nothing is skipped", async () => {
    const slot = await newSlot("resume");
    const a = await commitItems([101]);
    const b = await commitItems([102]);
    const c = await commitItems([103]);

    const first = await startStream(slot);
    const seen = await readTransactions(first, 3);
    expect(seen.map((tx) => tx.xid)).toEqual([a, b, c]);
    const confirmed = seen[0]?.endLsn ?? 0n;
    first.confirm(confirmed); // only A is durable on the targets
    await waitFor("the slot to record the confirmation", async () =>
      (await confirmedFlush(slot)) === confirmed ? true : undefined,
    );
    await first.stop();
    expect(first.state).toBe("stopped");
    expect(await first.readBatch()).toBeNull();
    await waitFor("the slot to be released", async () =>
      (await readSlotStatus(database.pool, slot))?.active === false ? true : undefined,
    );
    // Stopping reported the confirmed LSN, not what had been received.
    expect(await confirmedFlush(slot)).toBe(confirmed);

    const d = await commitItems([104]); // written while no stream runs

    // 0/0: the server resumes from the slot's confirmed_flush_lsn.
    const second = await startStream(slot, { startLsn: 0n });
    expect(second.stats.confirmedLsn).toBe(confirmed);
    const again = await readTransactions(second, 3);
    expect(again.map((tx) => tx.xid)).toEqual([b, c, d]);
    expect(again[0]?.commitLsn).toBe(seen[1]?.commitLsn);
    expect(again[1]?.endLsn).toBe(seen[2]?.endLsn);
    const last = again[2]?.endLsn ?? 0n;
    second.confirm(last);
    await second.stop();
    expect(await confirmedFlush(slot)).toBe(last);

    // Everything confirmed: a third stream gets nothing old.
    const third = await startStream(slot);
    const redelivered: CommittedTransaction[] = [];
    const until = Date.now() + 1_000;
    while (Date.now() < until) {
      redelivered.push(
        ...((await third.readBatch({ maxWaitMs: 20, idleTimeoutMs: 200 }))?.transactions ?? []),
      );
    }
    expect(redelivered).toEqual([]);
  });

  it("refuses a second stream on the same slot and names the pid that holds it", async () => {
    const slot = await newSlot("exclusive");
    const first = await startStream(slot);
    const pid = await waitFor("the slot to be active", async () => {
      return (await readSlotStatus(database.pool, slot))?.activePid ?? undefined;
    });

    const error = await startStream(slot).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ReplicationStreamError);
    expect((error as ReplicationStreamError).reason).toBe("slot-in-use");
    expect((error as ReplicationStreamError).pid).toBe(pid);
    expect((error as Error).message).toBe(
      `replication slot ${slot} is in use by another consumer (pid ${pid}); only one CDC stream per slot may run`,
    );

    // The first stream is unaffected.
    const xid = await commitItems([201]);
    expect((await readTransactions(first, 1))[0]?.xid).toBe(xid);
  });

  it("answers keepalives and never acknowledges what the consumer did not confirm", async () => {
    const slot = await newSlot("keepalive");
    // The server drops a silent consumer after 2 s and asks for a reply after 1 s of silence. With
    // the periodic update far away, only keepalive replies can keep this connection open.
    const stream = await startStream(slot, { walSenderTimeoutMs: 2_000, statusIntervalMs: 600_000 });
    await commitItems([301]);
    const [tx] = await readTransactions(stream, 1);
    const confirmed = tx?.endLsn ?? 0n;
    stream.confirm(confirmed);
    await waitFor("the confirmation", async () =>
      (await confirmedFlush(slot)) === confirmed ? true : undefined,
    );
    const pid = (await readSlotStatus(database.pool, slot))?.activePid;

    // Stay idle (for the published table) well past the timeout, while unpublished writes move the
    // server's position on: an automatic acknowledgement would show up as a later confirmed_flush_lsn.
    const started = Date.now();
    await waitFor("several answered keepalives over more than the sender timeout", async () => {
      // Fail fast, with the reason, if the server dropped us for not answering.
      if (stream.state !== "streaming") await stream.readBatch();
      await database.pool.query("insert into unpublished (note) values ('filtered')");
      return stream.stats.keepalivesAnswered >= 3 && Date.now() - started > 4_000 ? true : undefined;
    });
    expect(stream.state).toBe("streaming");
    const status = await readSlotStatus(database.pool, slot);
    expect(status?.active).toBe(true);
    expect(status?.activePid).toBe(pid);
    expect(status?.confirmedFlushLsn).toBe(confirmed);
    expect(stream.stats.serverLsn).toBeGreaterThan(confirmed);

    // The idle stream offers the server's position; confirming it lets the slot release WAL.
    const idle = await waitFor("an idle batch", async () => {
      const batch = await stream.readBatch({ maxWaitMs: 0, idleTimeoutMs: 500 });
      return batch && batch.confirmableLsn > confirmed ? batch : undefined;
    });
    expect(idle.transactions).toEqual([]);
    expect(await confirmedFlush(slot)).toBe(confirmed); // still only what we confirmed
    stream.confirm(idle.confirmableLsn);
    await waitFor("the idle position to be confirmed", async () =>
      (await confirmedFlush(slot)) === idle.confirmableLsn ? true : undefined,
    );
  });

  it("sends a status update every statusIntervalMs, reporting only the confirmed LSN", async () => {
    const slot = await newSlot("status");
    const initial = await confirmedFlush(slot);
    const stream = await startStream(slot, { statusIntervalMs: 100 });
    await commitItems([401]);
    await readTransactions(stream, 1); // received, deliberately not confirmed
    const replyTimes = new Set<string>();
    await waitFor("status updates to reach the server", async () => {
      const { rows } = await database.pool.query<{ reply_time: string | null }>(
        "select reply_time::text from pg_stat_replication where application_name = $1",
        [`shardshift-cdc-${slot}`],
      );
      if (rows[0]?.reply_time) replyTimes.add(rows[0].reply_time);
      return replyTimes.size >= 3 && stream.stats.statusUpdatesSent >= 5 ? true : undefined;
    });
    expect(await confirmedFlush(slot)).toBe(initial);
  });

  it("marks transactions written under a replication origin, and can leave them out (loop safety)", async () => {
    const slot = await newSlot("origin");
    const origin = `${SLOT_PREFIX}reverse`; // origins are per server too
    await database.pool.query("select pg_replication_origin_create($1)", [origin]);
    try {
      const client = await database.pool.connect();
      try {
        // What the reverse stream's apply does: write under its origin.
        await client.query("select pg_replication_origin_session_setup($1)", [origin]);
        await client.query("insert into items values (801, 1, 'applied by reverse CDC')");
        await client.query("select pg_replication_origin_session_reset()");
      } finally {
        client.release();
      }
      const own = await commitItems([802]);

      const all = await startStream(slot);
      const both = await readTransactions(all, 2);
      expect(both.map((tx) => tx.origin)).toEqual([origin, null]);
      await all.stop();

      const filtered = await startStream(slot, { origin: "none" });
      const [only] = await readTransactions(filtered, 1);
      expect(only?.xid).toBe(own);
      expect(only?.origin).toBeNull();
    } finally {
      await Promise.all(streams.splice(0).map((stream) => stream.stop()));
      await database.pool.query("select pg_replication_origin_drop($1)", [origin]);
    }
  });

  it("pauses reading while the consumer is behind, and loses nothing when it catches up", async () => {
    const slot = await newSlot("backpressure");
    const xids: number[] = [];
    for (let i = 0; i < 20; i++) xids.push(await commitItems([500 + i]));
    const stream = await startStream(slot, { maxBufferedTransactions: 4 });
    await waitFor("the stream to pause", () => (stream.stats.paused ? true : undefined));
    expect(stream.stats.bufferedTransactions).toBeGreaterThanOrEqual(4);
    const transactions = await readTransactions(stream, 20);
    expect(transactions.map((tx) => tx.xid)).toEqual(xids);
    expect(stream.stats.paused).toBe(false);
  });

  it("surfaces a lost connection as an error that says how to resume", async () => {
    const slot = await newSlot("lost");
    const stream = await startStream(slot);
    await commitItems([601]);
    await readTransactions(stream, 1);

    // dropSlot refuses to pull the slot from under a running stream unless told to.
    await expect(dropSlot(database.pool, slot)).rejects.toThrow(/is in use by a CDC stream \(pid \d+\)/);
    // Read until the stream fails: an empty batch (the server's idle position) may come first.
    const pending = (async () => {
      for (;;) {
        try {
          if ((await stream.readBatch()) === null) return null;
        } catch (e) {
          return e;
        }
      }
    })();
    expect(await dropSlot(database.pool, slot, { terminateActive: true })).toBe(true);
    const error = await pending;
    expect(error).toBeInstanceOf(ReplicationStreamError);
    expect((error as ReplicationStreamError).reason).toBe("connection-lost");
    expect((error as Error).message).toMatch(/restart the stream to resume/);
    expect(stream.state).toBe("failed");
    await expect(stream.readBatch()).rejects.toBe(error);
  });

  it("refuses a missing slot or publication with a sentence that says what to create", async () => {
    await expect(startStream(`${SLOT_PREFIX}missing`)).rejects.toMatchObject({
      reason: "slot-missing",
      message: expect.stringMatching(/does not exist on this server: create it/),
    });
    const slot = await newSlot("nopub");
    await expect(startStream(slot, { publications: [PUBLICATION, "no_such_pub"] })).rejects.toMatchObject({
      reason: "publication-missing",
      message: expect.stringMatching(/publication "no_such_pub" does not exist/),
    });
  });
});

describe("slot helpers (real server)", () => {
  it("reports slot status with retained WAL", async () => {
    const slot = await newSlot("status_fields");
    await commitItems([701]);
    const status = await readSlotStatus(database.pool, slot);
    expect(status).toMatchObject({
      slot,
      plugin: "pgoutput",
      slotType: "logical",
      active: false,
      walStatus: "reserved",
    });
    expect(status?.database).toBe(database.name);
    expect(status?.retainedBytes).toBeGreaterThan(0n);
    expect(await currentWalLsn(database.pool)).toBeGreaterThanOrEqual(status?.confirmedFlushLsn ?? 0n);
    expect(await readSlotStatus(database.pool, `${SLOT_PREFIX}nope`)).toBeNull();
    await expect(createSlot(database.pool, slot)).rejects.toThrow(/already exists/);
  });

  it("refuses to publish a table whose rows CDC could not identify", async () => {
    await database.pool.query("create table no_key (a int, b text)");
    await expect(
      createPublication(database.pool, "cdc_no_key_pub", [{ schema: "public", table: "no_key" }]),
    ).rejects.toThrow(/"public"\."no_key" has no primary key and no replica identity.*REPLICA IDENTITY FULL/);
    const { rowCount } = await database.pool.query(
      "select 1 from pg_publication where pubname = 'cdc_no_key_pub'",
    );
    expect(rowCount).toBe(0);
  });
});

describe("LSN helpers", () => {
  it("parses, formats and orders 64-bit positions", () => {
    expect(parseLsn("16/B374D848")).toBe(0x16_b374_d848n);
    expect(formatLsn(0x16_b374_d848n)).toBe("16/B374D848");
    expect(formatLsn(0n)).toBe("0/0");
    expect(parseLsn("0/0")).toBe(0n);
    const top = 0xffff_ffff_ffff_ffffn;
    expect(parseLsn(formatLsn(top))).toBe(top);
    // Beyond 2^53, where a JS number would round.
    expect(formatLsn(parseLsn("FFFFFFFF/FFFFFFFE"))).toBe("FFFFFFFF/FFFFFFFE");
    expect(compareLsn(parseLsn("1/0"), parseLsn("0/FFFFFFFF"))).toBe(1);
    expect(compareLsn(parseLsn("A/1"), parseLsn("a/1"))).toBe(0);
    expect(() => parseLsn("12345")).toThrow(/not a PostgreSQL LSN/);
    expect(() => formatLsn(-1n)).toThrow(RangeError);
  });
});
