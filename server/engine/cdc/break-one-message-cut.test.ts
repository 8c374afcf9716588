// Break pass on the one-message apply: cut the connection after EVERY byte offset of a one-message
// transaction (BEGIN; EXECUTE …; unnamed statement; stamp; COMMIT). Whatever the offset, the target's
// origin must have moved if and only if the batch's rows committed (invariant 1: exactly once).
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitFor } from "../../testing/worker-process";
import type { Statement } from "./apply";
import { readOriginProgress, TargetApplier } from "./target-applier";

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase("break_one_message_cut");
  await database.pool.query("create table items (id bigint primary key, v text not null)");
});

afterAll(async () => {
  await database?.drop();
});

/** Forwards everything until armed; then forwards exactly `budget` more client bytes and cuts both sides. */
async function startRelay(port: number) {
  const sockets: net.Socket[] = [];
  let budget: number | null = null;
  let cut = false;
  const cutAll = () => {
    cut = true;
    for (const s of sockets) s.destroy();
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    sockets.push(client, upstream);
    upstream.on("data", (chunk) => {
      if (!cut) client.write(chunk);
    });
    client.on("data", (chunk: Buffer) => {
      if (cut) return;
      if (budget === null) {
        upstream.write(chunk);
        return;
      }
      const part = chunk.subarray(0, budget);
      budget -= part.length;
      if (part.length) upstream.write(part);
      if (budget === 0 || part.length < chunk.length) {
        // Let the forwarded bytes leave before the cut.
        upstream.end(() => cutAll());
        setTimeout(cutAll, 50);
      }
    });
    for (const s of [client, upstream]) s.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    arm(bytes: number) {
      budget = bytes;
    },
    close() {
      cutAll();
      server.close();
    },
  };
}

const insert = (id: number, v: string): Statement => ({
  name: "break_cut_insert",
  text: "insert into items (id, v) values ($1, $2)",
  values: [String(id), v],
});
const update = (id: number, v: string): Statement => ({
  text: `update items set v = $2 || '$1' where id = $1::bigint`,
  values: [String(id), v],
});

describe("a one-message transaction cut after every byte", () => {
  it("moves the origin if and only if its rows committed", { timeout: 600_000 }, async () => {
    const origin = "shardshift_break_cut_t0";
    const app = "break-one-message-cut";
    const port = Number(new URL(database.url).port);
    let lsn = 0x1000n;
    let messageBytes = Number.POSITIVE_INFINITY;
    const outcomes = { committed: 0, absent: 0 };
    try {
      for (let offset = 0; offset <= messageBytes; offset++) {
        const relay = await startRelay(port);
        const via = new URL(database.url);
        via.host = `127.0.0.1:${relay.port}`;
        const target = await TargetApplier.open({
          url: via.toString(),
          ordinal: 0,
          origin,
          applicationName: app,
        });
        try {
          const base = 100_000 + offset * 10;
          // Parses the named statement: the next batch goes as one message.
          lsn += 0x10n;
          await target.apply([insert(base, "warm")], { lsn, commitTimeIso: new Date().toISOString() });
          const before = lsn;
          expect(await readOriginProgress(database.pool, origin)).toBe(before);
          const batch = [insert(base + 1, "it's \\ $1"), insert(base + 2, "b"), update(base + 1, "x'\\")];
          if (messageBytes === Number.POSITIVE_INFINITY) {
            const client = (target as unknown as { client: import("pg").Client }).client;
            const { oneMessageTransactionSql } = await import("./one-message-transaction");
            const { stampAndCommitSql } = await import("./apply-origin");
            const text = oneMessageTransactionSql(
              client,
              batch,
              stampAndCommitSql(lsn + 0x10n, new Date().toISOString()),
            );
            expect(text).not.toBeNull();
            // 'Q', length, text, NUL.
            messageBytes = 1 + 4 + Buffer.byteLength(text ?? "") + 1;
          }
          relay.arm(offset);
          lsn += 0x10n;
          const stamp = { lsn, commitTimeIso: new Date().toISOString() };
          await target.apply(batch, stamp).catch(() => false);
        } finally {
          relay.close();
          await target.close();
        }
        await waitFor(
          "the cut session to end",
          async () =>
            (await database.pool.query("select 1 from pg_stat_activity where application_name = $1", [app]))
              .rows.length === 0,
          10_000,
        );
        const base = 100_000 + offset * 10;
        const { rows } = await database.pool.query<{ id: string; v: string }>(
          "select id, v from items where id between $1 and $2 order by id",
          [base, base + 9],
        );
        const progress = await readOriginProgress(database.pool, origin);
        if (progress === lsn) {
          outcomes.committed++;
          expect(rows, `offset ${offset}`).toEqual([
            { id: String(base), v: "warm" },
            { id: String(base + 1), v: "x'\\$1" },
            { id: String(base + 2), v: "b" },
          ]);
        } else {
          outcomes.absent++;
          expect(progress, `offset ${offset}: origin`).toBe(lsn - 0x10n);
          expect(rows, `offset ${offset}`).toEqual([{ id: String(base), v: "warm" }]);
        }
      }
      // Every offset short of the whole message left nothing; the whole message committed.
      expect(outcomes.absent).toBeGreaterThanOrEqual(messageBytes - 1);
      expect(outcomes.committed).toBeGreaterThanOrEqual(1);
    } finally {
      await database.pool.query(
        `select pg_replication_origin_drop(roname) from pg_replication_origin where roname = '${origin}'`,
      );
    }
  });
});
