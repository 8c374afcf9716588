// The origin stamp and the COMMIT must reach the target as one message (issue 11's crash-test loss).
// PostgreSQL advances a session's replication origin when a stamped transaction ABORTS too
// (failed-apply-origin.test.ts). The one-Sync apply used to send the stamp as the last Execute before
// the Sync that commits: the server runs each Execute as it arrives, so a connection lost after the
// stamp's bytes and before the Sync's (the engine killed or its thread ended mid-write, a batch
// larger than the socket's buffer, a network cut) left an aborted transaction that moved the origin
// past a batch the target never committed. The next runner skipped that batch there: lost rows.
//
// Here a TCP relay between the applier and a real server forwards the batch's bytes up to its first
// Sync message and then cuts both sides, once the server has run everything before it. The origin
// must not move. It failed before the fix (the origin said 0/500 after the cut).
//
// A batch whose statements are all prepared on the connection goes as ONE simple-protocol message
// (one-message-transaction.ts); the second test cuts that message in the middle of its stamp.
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitFor } from "../../testing/worker-process";
import type { Statement } from "./apply";
import { readOriginProgress, TargetApplier } from "./target-applier";

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase("stamp_at_commit");
  await database.pool.query("create table items (id bigint primary key, v text not null)");
});

afterAll(async () => {
  await database?.drop();
});

/** 'S', then the length 4: a Sync message (no parameter value of this test contains these bytes). */
const SYNC = Buffer.from([0x53, 0, 0, 0, 4]);

/** The stamp's function name, in the middle of a one-message transaction. */
const STAMP = Buffer.from("pg_replication_origin_xact_setup");

/**
 * A relay to the test server. Until `arm(marker)` it forwards everything; once armed, it forwards
 * the client's bytes up to (not including) the first `marker` and holds the rest; `drop()` then
 * ends both sides without sending what it holds.
 */
async function startRelay(target: URL) {
  const sockets: net.Socket[] = [];
  let marker: Buffer | null = null;
  let holding = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.push(client, upstream);
    upstream.on("data", (chunk) => client.write(chunk));
    client.on("data", (chunk: Buffer) => {
      if (holding) return;
      const at = marker ? chunk.indexOf(marker) : -1;
      if (at === -1) {
        upstream.write(chunk);
        return;
      }
      upstream.write(chunk.subarray(0, at));
      holding = true;
    });
    for (const s of [client, upstream]) s.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    arm(at: Buffer) {
      marker = at;
    },
    get holding() {
      return holding;
    },
    drop() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

const insert = (id: number, v: string, name?: string): Statement => ({
  name,
  text: "insert into items (id, v) values ($1, $2)",
  values: [String(id), v],
});
const stamp = (lsn: bigint) => ({ lsn, commitTimeIso: new Date().toISOString() });

describe("an apply whose connection is cut mid-batch", () => {
  it("leaves the target's origin where its last commit put it", { timeout: 60_000 }, async () => {
    const url = new URL(database.url);
    const relay = await startRelay(url);
    const origin = "shardshift_stamp_at_commit_test_t0";
    const viaRelay = new URL(database.url);
    viaRelay.host = `127.0.0.1:${relay.port}`;
    const target = await TargetApplier.open({
      url: viaRelay.toString(),
      ordinal: 0,
      origin,
      applicationName: "stamp-at-commit-test",
    });
    try {
      expect(await target.apply([insert(1, "a")], stamp(0x100n))).toBe(true);
      expect(await readOriginProgress(database.pool, origin)).toBe(0x100n);

      // A statement not yet parsed on this connection: the batch goes the pipelined way, Sync and all.
      relay.arm(SYNC);
      const applying = target.apply(
        [insert(2, "b", "stamp_cut"), insert(3, "c", "stamp_cut")],
        stamp(0x500n),
      );
      applying.catch(() => {});
      await waitFor("the relay to hold the batch's Sync", async () => relay.holding, 10_000);
      // Everything before the Sync has run: the backend waits for the next message.
      await waitFor(
        "the server to have run the batch up to its Sync",
        async () => {
          const { rows } = await database.pool.query(
            `select 1 from pg_stat_activity
              where application_name = 'stamp-at-commit-test' and wait_event = 'ClientRead'
                and backend_xid is not null`,
          );
          return rows.length === 1;
        },
        10_000,
      );
      relay.drop();
      await expect(applying).rejects.toThrow();
      await waitFor(
        "the server to end the cut session",
        async () =>
          (
            await database.pool.query(
              "select 1 from pg_stat_activity where application_name = 'stamp-at-commit-test'",
            )
          ).rows.length === 0,
        10_000,
      );
      // Nothing of the batch committed, so the origin must still say where the last commit put it.
      expect((await database.pool.query("select id from items order by id")).rows).toEqual([{ id: "1" }]);
      expect(await readOriginProgress(database.pool, origin)).toBe(0x100n);
    } finally {
      await target.close();
      relay.drop();
      await database.pool.query(
        `select pg_replication_origin_drop(roname) from pg_replication_origin where roname = '${origin}'`,
      );
    }
  });

  it("leaves the origin alone when a one-message transaction is cut inside its stamp", {
    timeout: 60_000,
  }, async () => {
    const relay = await startRelay(new URL(database.url));
    const origin = "shardshift_stamp_at_commit_test_t1";
    const viaRelay = new URL(database.url);
    viaRelay.host = `127.0.0.1:${relay.port}`;
    const target = await TargetApplier.open({
      url: viaRelay.toString(),
      ordinal: 1,
      origin,
      applicationName: "stamp-at-commit-one-message",
    });
    try {
      // The first batch parses the named statement; the next one goes as one message.
      expect(await target.apply([insert(11, "a", "stamp_one")], stamp(0x100n))).toBe(true);
      relay.arm(STAMP);
      const applying = target.apply(
        [insert(12, "b", "stamp_one"), insert(13, "c", "stamp_one")],
        stamp(0x500n),
      );
      applying.catch(() => {});
      await waitFor("the relay to hold the message's stamp", async () => relay.holding, 10_000);
      relay.drop();
      await expect(applying).rejects.toThrow();
      await waitFor(
        "the server to end the cut session",
        async () =>
          (
            await database.pool.query(
              "select 1 from pg_stat_activity where application_name = 'stamp-at-commit-one-message'",
            )
          ).rows.length === 0,
        10_000,
      );
      expect((await database.pool.query("select id from items where id > 10 order by id")).rows).toEqual([
        { id: "11" },
      ]);
      expect(await readOriginProgress(database.pool, origin)).toBe(0x100n);
    } finally {
      await target.close();
      relay.drop();
      await database.pool.query(
        `select pg_replication_origin_drop(roname) from pg_replication_origin where roname = '${origin}'`,
      );
    }
  });
});
