// Reverse CDC is a second composition of the replication parts, not a copy: a shard → legacy stream
// for the tenants it carries, running on real servers beside the worker's forward CDC.
// - A carried tenant's writes on the shard reach legacy exactly once, across a stream that was cut
//   mid-writes and replayed from the slot's confirmed position (legacy's origin skips what it holds).
// - Nothing echoes: what reverse CDC applied to legacy is not sent back to the shard by forward CDC
//   (its origin is ours), and what forward CDC applied to the shard is not sent back to legacy
//   (origin 'none') — counted by ENABLE ALWAYS triggers that see every write, applied or not.
// - Tenants it does not carry, and reference tables, are never sent back.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemActor } from "../../services/actor";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startMovementOn, waitForBackfill, waitForCatchUp } from "../../testing/movement-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";
import { introspectSource } from "../analysis/introspect";
import { withClient } from "../sql/connect";
import { dropSlotOriginsSql } from "./apply-origin";
import type { CdcRunner } from "./cdc-runner";
import { carriedTenantsRoute } from "./change-router";
import { startReverseCdc } from "./reverse-cdc";
import {
  createPublication,
  createSlot,
  dropSlot,
  parseLsn,
  readSlotStatus,
  terminateSlotConsumerSql,
} from "./slot";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let worker: Worker;
let legacy: TestDatabase;
let shard: TestDatabase;
const actor = systemActor("reverse-cdc-test", "engineer@test");
const reverseSlot = `rev_${process.pid}`;
const runners: CdcRunner[] = [];

const DDL = `
  create table accounts (tenant_id bigint not null, id bigint not null, name text, primary key (tenant_id, id));
  create table plans (id int primary key, name text);`;

/** Every write to accounts, whoever made it (ENABLE ALWAYS: apply sessions run as replicas). */
const COUNT_WRITES = `
  create schema audit;
  create table audit.writes (tenant_id bigint, id bigint, op text);
  create function audit.count_write() returns trigger language plpgsql as $$
  begin
    if tg_op = 'DELETE' then insert into audit.writes values (old.tenant_id, old.id, tg_op);
    else insert into audit.writes values (new.tenant_id, new.id, tg_op); end if;
    return null;
  end $$;
  create trigger count_write after insert or update or delete on public.accounts
    for each row execute function audit.count_write();
  alter table public.accounts enable always trigger count_write;`;

beforeAll(async () => {
  control = await useControlPlane("rev_control");
  worker = await startWorker(control.url, { log: () => {} });
  legacy = await createTestDatabase("rev_legacy");
  shard = await createTestDatabase("rev_shard");
  await legacy.pool.query(DDL);
  await shard.pool.query(DDL);
  await legacy.pool.query(`
    insert into accounts select t, i, 'initial' from generate_series(1, 4) t, generate_series(1, 5) i;
    insert into plans values (1, 'free'), (2, 'pro');`);
});

afterAll(async () => {
  for (const r of runners) await r.stop();
  await worker?.stop();
  await dropSlot(shard.pool, reverseSlot, { terminateActive: true }).catch(() => {});
  const origins = dropSlotOriginsSql(reverseSlot);
  await legacy?.pool.query(origins.text, origins.values).catch(() => {});
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

/** Writes to accounts counted by op on one side, for some tenants. */
async function writesOf(db: TestDatabase, tenants: number[]): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    "select count(*)::int as n from audit.writes where tenant_id = any($1::bigint[])",
    [tenants],
  );
  return rows[0]?.n ?? 0;
}

async function accountsOf(db: TestDatabase, tenant: number) {
  return (await db.pool.query("select id, name from accounts where tenant_id = $1 order by id", [tenant]))
    .rows;
}

describe("reverse CDC (shard → legacy) beside forward CDC", () => {
  it("applies its tenants' changes to legacy exactly once, echoes nothing, and never sends back other tenants or reference tables", {
    timeout: 180_000,
  }, async () => {
    // Forward CDC through the worker: legacy → the shard (one shard: every tenant is placed there).
    const { planId, slotName } = await startMovementOn(actor, "reverse", legacy.url, [shard.url]);
    await waitForBackfill(planId);
    await waitForCatchUp(legacy.pool, slotName);
    await legacy.pool.query(COUNT_WRITES);
    await shard.pool.query(COUNT_WRITES);

    // The reverse stream's slot on the shard, as a cutover will create it; tenants 1 and 2 are cut over.
    await createPublication(shard.pool, `${reverseSlot}_pub`, [
      { schema: "public", table: "accounts" },
      { schema: "public", table: "plans" },
    ]);
    const slotLsn = await createSlot(shard.pool, reverseSlot);
    const schema = await withClient(legacy.url, (c) => introspectSource(c, "tenant_id"));
    const startReverse = () => {
      const runner = startReverseCdc({
        shardUrl: shard.url,
        shard: shard.pool,
        shardName: "shard 0",
        slot: reverseSlot,
        slotLsn,
        publication: `${reverseSlot}_pub`,
        legacyUrl: legacy.url,
        legacy: legacy.pool,
        schema,
        route: carriedTenantsRoute(["1", "2"]),
        log: () => {},
      });
      runners.push(runner);
      return runner;
    };
    const attach = async () => {
      // The slot is free once the last consumer's server process ended.
      await waitFor(
        "the reverse slot to be free",
        async () => !(await readSlotStatus(shard.pool, reverseSlot))?.active,
      );
      const runner = startReverse();
      await waitFor(
        "the reverse stream to attach",
        async () => (await readSlotStatus(shard.pool, reverseSlot))?.active,
      );
      return runner;
    };
    let reverse = await attach();

    // The application writes tenant 1 on its new owner, the shard: inserts (each its own
    // transaction), while the reverse stream's connection is cut twice and it restarts from its
    // slot's confirmed position (behind what legacy already applied).
    const inserts = 120;
    const writer = (async () => {
      for (let i = 100; i < 100 + inserts; i++) {
        await shard.pool.query("insert into accounts values (1, $1, 'on the shard')", [i]);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    for (let cut = 0; cut < 2; cut++) {
      await new Promise((r) => setTimeout(r, 250));
      const terminate = terminateSlotConsumerSql(reverseSlot);
      await shard.pool.query(terminate.text, terminate.values);
      await reverse.ended;
      expect(reverse.failure).toBeTruthy(); // its connection was cut: it ended with that error
      reverse = await attach();
    }
    await writer;
    await shard.pool.query(`
      update accounts set name = 'renamed on the shard' where tenant_id = 1 and id = 1;
      delete from accounts where tenant_id = 1 and id = 2;
      insert into accounts values (2, 100, 'tenant 2 on the shard');
      insert into accounts values (3, 100, 'tenant 3 is not cut over');
      insert into plans values (3, 'written on the shard');`);
    // A write legacy still takes for tenant 2 (forward CDC carries it to the shard under our origin).
    await legacy.pool.query("insert into accounts values (2, 200, 'written on legacy')");
    // And for tenant 4, which legacy owns.
    await legacy.pool.query("insert into accounts values (4, 100, 'legacy owns tenant 4')");

    // Tenant 1: the inserts, one update, one delete; tenant 2: one insert on each side.
    await waitFor(
      "legacy to hold tenant 1 and 2's shard writes",
      async () => (await writesOf(legacy, [1, 2])) >= inserts + 4,
      60_000,
    );
    await waitForCatchUp(legacy.pool, slotName);
    const { rows: shardHead } = await shard.pool.query<{ lsn: string }>(
      "select pg_current_wal_insert_lsn()::text as lsn",
    );
    const head = parseLsn(shardHead[0]?.lsn ?? "0/0");
    await waitFor(
      "the reverse stream to catch up",
      async () => ((await readSlotStatus(shard.pool, reverseSlot))?.confirmedFlushLsn ?? 0n) >= head,
    );

    // Exactly once on legacy: every shard write of tenants 1 and 2 once, plus legacy's own.
    expect(await writesOf(legacy, [1])).toBe(inserts + 2);
    expect(await writesOf(legacy, [2])).toBe(2);
    expect(await accountsOf(legacy, 1)).toEqual(await accountsOf(shard, 1));
    expect(await accountsOf(legacy, 2)).toEqual(await accountsOf(shard, 2));
    // No echo to the shard: it saw tenant 1's and 2's own writes, plus the one forward CDC brought.
    expect(await writesOf(shard, [1])).toBe(inserts + 2);
    expect(await writesOf(shard, [2])).toBe(2);
    // No echo to legacy: tenant 4's row (legacy's write, applied to the shard) was written there once.
    expect(await writesOf(legacy, [4])).toBe(1);
    expect(await writesOf(shard, [4])).toBe(1);
    // Not carried: tenant 3's shard write and the reference table's stay on the shard.
    expect(await accountsOf(legacy, 3)).toEqual((await accountsOf(shard, 3)).filter((r) => r.id !== "100"));
    expect((await legacy.pool.query("select id from plans order by id")).rows).toEqual([
      { id: 1 },
      { id: 2 },
    ]);
    expect(reverse.finished).toBe(false);
  });
});
