// Exactly once per target, by the target's own record (replication origins):
// - a replayed stream (its replication connection terminated, as a network blip or a failover
//   does) on a shard with secondary unique keys, under writes that move unique values between rows,
//   leaves CDC running and the rows equal — re-applying an already-applied swap would violate
//   unique (tenant_id, email) or the partial unique index, for good;
// - a shard crashed (`pg_ctl -m immediate`) right after an asynchronously committed batch and
//   started again loses nothing: the slot was never told the lost batch was done.

import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { ensureDatabase } from "../../embedded/embedded-server";
import { systemActor } from "../../services/actor";
import { compareShards } from "../../testing/compare-shards";
import { useControlPlane } from "../../testing/control-plane";
import { type CrashableServer, startCrashableServer } from "../../testing/crashable-server";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startMovementOn, waitForBackfill, waitForCatchUp } from "../../testing/movement-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";
import type { SourceSchema } from "../analysis/introspect";
import { hashPlacement } from "../router/placement";
import { readSlotStatus, terminateSlotConsumerSql } from "./slot";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let worker: Worker;
const actor = systemActor("exactly-once-test", "engineer@test");
const dropLater: TestDatabase[] = [];

beforeAll(async () => {
  control = await useControlPlane("once_control");
  worker = await startWorker(control.url, { log: () => {} });
});

afterAll(async () => {
  await worker?.stop();
  await control?.drop();
  for (const d of dropLater) await d.drop();
});

async function movementOf(planId: string) {
  return db().dataMovement.findUniqueOrThrow({ where: { planId } });
}

async function expectEqual(planId: string, legacy: pg.Pool, shards: pg.Pool[]) {
  const movement = await movementOf(planId);
  const differences = await compareShards(
    legacy,
    shards,
    movement.sourceSchema as unknown as SourceSchema,
    hashPlacement(shards.length),
  );
  expect(differences).toEqual([]);
}

const USERS_DDL = `
  create table users (
    tenant_id bigint not null, id bigint not null, email text not null, is_primary boolean not null default false,
    primary key (tenant_id, id), unique (tenant_id, email));
  create unique index users_one_primary on users (tenant_id) where is_primary;`;

describe("a replayed stream on a shard with secondary unique keys", () => {
  it("skips what the shard already holds: CDC keeps running and the rows are equal", {
    timeout: 120_000,
  }, async () => {
    const legacy = await createTestDatabase("once_legacy");
    const shard = await createTestDatabase("once_shard");
    dropLater.push(legacy, shard);
    await legacy.pool.query(USERS_DDL);
    await shard.pool.query(USERS_DDL);
    await legacy.pool.query(`
      insert into users select t, u, 'u' || u || '@t' || t, u = 1 from generate_series(1, 5) t, generate_series(1, 6) u`);
    const { planId, slotName } = await startMovementOn(actor, "replay", legacy.url, [shard.url]);
    await waitForBackfill(planId);

    // Swaps of emails between two users (through a free value, as an application must) and moves
    // of the primary flag: each keeps the unique keys on legacy, but replaying an old one on a
    // newer state collides with the row that holds the value now.
    let writing = true;
    let swaps = 0;
    const writer = (async () => {
      const client = new pg.Client({ connectionString: legacy.url });
      await client.connect();
      try {
        for (let i = 0; writing; i++) {
          const tenant = (i % 5) + 1;
          const a = (i % 6) + 1;
          const b = ((i * 7 + 3) % 6) + 1;
          if (a === b) continue;
          await client.query(`
            begin;
            create temp table if not exists pair (ea text, eb text) on commit delete rows;
            insert into pair select (select email from users where tenant_id = ${tenant} and id = ${a}),
                                    (select email from users where tenant_id = ${tenant} and id = ${b});
            update users set email = 'tmp-' || id where tenant_id = ${tenant} and id = ${a};
            update users set email = (select ea from pair) where tenant_id = ${tenant} and id = ${b};
            update users set email = (select eb from pair) where tenant_id = ${tenant} and id = ${a};
            update users set is_primary = false where tenant_id = ${tenant} and is_primary;
            update users set is_primary = true where tenant_id = ${tenant} and id = ${b};
            commit`);
          swaps++;
          await new Promise((r) => setTimeout(r, 5));
        }
      } finally {
        await client.end();
      }
    })();

    // Three replication connections terminated mid-writes: each new stream replays from the slot's
    // confirmed position, behind what the shard already applied.
    for (let k = 0; k < 3; k++) {
      await new Promise((r) => setTimeout(r, 1_500));
      const terminate = terminateSlotConsumerSql(slotName);
      await legacy.pool.query(terminate.text, terminate.values);
      await waitFor(
        "the stream to reconnect",
        async () => (await readSlotStatus(legacy.pool, slotName))?.active,
      );
    }
    await new Promise((r) => setTimeout(r, 1_500));
    writing = false;
    await writer;
    expect(swaps).toBeGreaterThan(50);

    await waitForCatchUp(legacy.pool, slotName);
    expect((await movementOf(planId)).status).toBe("running");
    await expectEqual(planId, legacy.pool, [shard.pool]);
  });
});

describe("a shard crashed right after an asynchronous batch", () => {
  let server: CrashableServer;

  beforeAll(async () => {
    server = await startCrashableServer("once-crash-shard", 0);
    await ensureDatabase(server.url(), "app");
    // Keep asynchronous commits in the WAL buffers (not even written) for up to 10 s, so a crash
    // right after a batch really loses it.
    const admin = new pg.Client({ connectionString: server.url() });
    await admin.connect();
    await admin.query("alter system set wal_writer_delay = '10s'");
    await admin.query("alter system set wal_writer_flush_after = '1GB'");
    await admin.query("select pg_reload_conf()");
    await admin.end();
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("loses nothing: the lost batch is applied again after the restart", { timeout: 120_000 }, async () => {
    const legacy = await createTestDatabase("crash_legacy");
    dropLater.push(legacy);
    const ddl =
      "create table items (tenant_id bigint not null, id bigint not null, v text, primary key (tenant_id, id))";
    await legacy.pool.query(ddl);
    await legacy.pool.query("insert into items select t, 1, 'x' from generate_series(1, 20) t");
    const shard = new pg.Pool({ connectionString: server.url("app") });
    shard.on("error", () => {});
    try {
      await shard.query(ddl);
      const { planId, slotName } = await startMovementOn(actor, "crash", legacy.url, [server.url("app")]);
      await waitForBackfill(planId);
      await waitForCatchUp(legacy.pool, slotName);

      // One batch, committed asynchronously on the shard; the moment it is visible there, the
      // shard's server dies without writing its WAL buffers.
      await legacy.pool.query("insert into items select t, 2, 'lost?' from generate_series(1, 20) t");
      await waitFor(
        "the batch to be visible on the shard",
        async () => (await shard.query("select count(*)::int n from items where id = 2")).rows[0].n === 20,
        30_000,
      );
      await server.crash();
      await server.restart();
      // Another database on the shard's server writes (WAL is per server): the shard's WAL moves
      // past where the lost batch was, so a WAL position no longer tells what survived.
      const other = new pg.Client({ connectionString: server.url() });
      await other.connect();
      await other.query(
        "create table filler as select g, repeat('x', 200) as pad from generate_series(1, 5000) g; checkpoint",
      );
      await other.end();
      // Time for the stream to confirm whatever it believes is durable now.
      await new Promise((r) => setTimeout(r, 3_000));

      await legacy.pool.query("insert into items select t, 3, 'after' from generate_series(1, 20) t");
      await waitForCatchUp(legacy.pool, slotName);
      const { rows } = await shard.query("select id, count(*)::int n from items group by id order by id");
      expect(rows).toEqual([
        { id: "1", n: 20 },
        { id: "2", n: 20 },
        { id: "3", n: 20 },
      ]);
      expect((await movementOf(planId)).status).toBe("running");
    } finally {
      await shard.end();
    }
  });
});
