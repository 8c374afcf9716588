// Ownership by log position, on real servers, with the replication parts composed here (no worker),
// so a stream can be stopped and restarted at chosen points and made to replay:
// - restart: a forward stream stopped before a fence change and started again after it (with the
//   slot never confirmed, so every restart replays the whole stream) applies nothing twice and
//   reports as stray only the write made after the change — a write the targets already hold is
//   skipped before ownership (read at open: the newer state) could judge it;
// - reverse: a shard's reverse stream carries a tenant exactly between the fence message that
//   makes the shard its owner and the one that gives it back, within one stream.
import crypto from "node:crypto";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitFor } from "../../testing/worker-process";
import { introspectSource, type SourceSchema } from "../analysis/introspect";
import { hashPlacement } from "../router/placement";
import { type FenceRoute, installFence, LEGACY_OWNER_KEY, syncFence } from "../routing/fence";
import { withClient } from "../sql/connect";
import { applyOriginName, isApplyOrigin } from "./apply-origin";
import type { CdcRunner } from "./cdc-runner";
import { ChangeRouter } from "./change-router";
import { Confirmer } from "./confirmer";
import { reverseOriginName, waitForOriginProgress } from "./drain";
import { ForwardOwnershipRoute, readFenceOwnership, type StrayChange } from "./ownership-route";
import { runReplication } from "./replication-loop";
import { reverseOwnershipRoute, startReverseCdc } from "./reverse-cdc";
import { dropReverseSlot, ensureReverseSlot } from "./reverse-slot";
import { createPublication, createSlot, dropSlot, readSlotStatus } from "./slot";
import { StreamReader } from "./stream-reader";
import { readOriginProgress, TargetApplier, TargetAppliers } from "./target-applier";

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

const TABLES = [
  { qualified: "public.accounts", kind: "sharded" as const },
  { qualified: "public.plans", kind: "reference" as const },
];

let legacy: TestDatabase;
let shards: TestDatabase[];
let schema: SourceSchema;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  legacy = await createTestDatabase("own_legacy");
  shards = [await createTestDatabase("own_shard0"), await createTestDatabase("own_shard1")];
  for (const d of [legacy, ...shards]) await d.pool.query(DDL);
  // The movement's snapshot: the application's tables (the audit table below is the test's own).
  schema = await withClient(legacy.url, (c) => introspectSource(c, "tenant_id"));
  for (const d of [legacy, ...shards]) await d.pool.query(COUNT_WRITES);
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

function shard(ordinal: number): TestDatabase {
  const found = shards[ordinal];
  if (!found) throw new Error(`no shard ${ordinal}`);
  return found;
}

/** A write that bypasses the fence's triggers: session_replication_role = replica, no origin. */
async function bypassing(pool: pg.Pool, sql: string, values: unknown[] = []) {
  const client = await pool.connect();
  try {
    await client.query("begin; set local session_replication_role = replica");
    await client.query(sql, values);
    await client.query("commit");
  } finally {
    client.release();
  }
}

async function writesOf(db: TestDatabase, tenant: string, id: number): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    "select count(*)::int as n from audit.writes where tenant_id = $1 and id = $2",
    [tenant, id],
  );
  return rows[0]?.n ?? 0;
}

async function hasAccount(db: TestDatabase, tenant: string, id: number): Promise<boolean> {
  const { rowCount } = await db.pool.query("select 1 from accounts where tenant_id = $1 and id = $2", [
    tenant,
    id,
  ]);
  return (rowCount ?? 0) > 0;
}

/** One fence change on `pool`, as syncFence makes it; returns the freeze position. */
function fenceChanger(pool: pg.Pool, planId: string) {
  let version = 0;
  return async (routes: Omit<FenceRoute, "version" | "ownerName">[]): Promise<bigint> => {
    version++;
    const { lsn } = await syncFence(pool, {
      planId,
      databaseName: "test",
      routes: routes.map((r) => ({ ...r, ownerName: r.ownerKey, version })),
      version,
    });
    return lsn;
  };
}

describe("a forward stream restarted across a fence change", () => {
  it("applies nothing twice and reports as stray only the write made after the change", {
    timeout: 120_000,
  }, async () => {
    const planId = crypto.randomUUID();
    const slot = `own_fwd_${crypto.randomBytes(3).toString("hex")}`;
    const placement = hashPlacement(2);
    const tenant = [...Array(50).keys()].map(String).find((t) => placement.shardFor(t) === 1) ?? "";
    const other = [...Array(50).keys()].map(String).find((t) => placement.shardFor(t) === 0) ?? "";
    const owner = "shard-1-database-id";
    await installFence(legacy.pool, {
      planId,
      self: { key: LEGACY_OWNER_KEY, name: "legacy" },
      legacyName: "legacy",
      shardKeyColumn: "tenant_id",
      tables: TABLES,
    });
    const changeFence = fenceChanger(legacy.pool, planId);
    await createPublication(legacy.pool, slot, [
      { schema: "public", table: "accounts" },
      { schema: "public", table: "plans" },
    ]);
    const slotLsn = await createSlot(legacy.pool, slot);
    cleanups.push(() => dropSlot(legacy.pool, slot, { terminateActive: true }));
    const origins = shards.map((_, k) => applyOriginName(slot, slotLsn, k));

    /** Forward CDC's composition, except that it never confirms: each run replays from the slot's start. */
    const run = async () => {
      const strays: StrayChange[] = [];
      const reader = await StreamReader.open({
        url: legacy.url,
        source: legacy.pool,
        slot,
        publication: slot,
        schema,
        origin: "any",
        skipOrigin: isApplyOrigin,
        sourceName: "legacy",
        applicationName: "ownership-test",
        maxChangesPerPiece: 5_000,
      });
      const ownership = new ForwardOwnershipRoute(
        placement,
        await readFenceOwnership(legacy.pool, planId, LEGACY_OWNER_KEY),
      );
      const targets = await Promise.all(
        shards.map((s, k) => TargetApplier.open({ url: s.url, ordinal: k, origin: origins[k] ?? "" })),
      );
      const appliers = new TargetAppliers(targets);
      const confirmer = new Confirmer({
        durableOf: (k) => readOriginProgress(shard(k).pool, origins[k] ?? ""),
        confirm: () => {},
        log: () => {},
      });
      let stopping = false;
      const done = runReplication(
        { reader, router: new ChangeRouter(schema, ownership), appliers, confirmer },
        {
          keepGoing: () => !stopping,
          afterRoute: async () => {
            strays.push(...ownership.takeStrays());
          },
        },
      );
      return {
        strays,
        async stop() {
          stopping = true;
          await reader.stop();
          await done;
          await confirmer.stop();
          await reader.close();
          await appliers.close();
          await waitFor(
            "the slot to be free",
            async () => !(await readSlotStatus(legacy.pool, slot))?.active,
          );
        },
      };
    };
    /** Waits until every shard durably holds everything legacy committed so far (a drain). */
    const drain = async () => {
      const lsn = await changeFence([]);
      for (const [k, s] of shards.entries()) {
        const outcome = await waitForOriginProgress(s.pool, origins[k] ?? "", lsn, Date.now() + 30_000);
        expect(outcome.reached).toBe(true);
      }
    };

    // Run 1: a write of the tenant while legacy owns it, applied to its shard only (the other
    // shard's origin stays behind it).
    const first = await run();
    await legacy.pool.query("insert into accounts values ($1, 100, 'before the flip')", [tenant]);
    await waitFor("the write to reach its shard", () => hasAccount(shard(1), tenant, 100));
    await first.stop();

    // While no stream runs: legacy gives the tenant to its shard, and a session that bypasses the
    // fence writes it anyway; another tenant's write.
    await changeFence([{ tenantKey: tenant, ownerKey: owner, frozen: false }]);
    await bypassing(legacy.pool, "insert into accounts values ($1, 101, 'after the flip')", [tenant]);
    await legacy.pool.query("insert into accounts values ($1, 100, 'another tenant')", [other]);

    // Run 2 replays everything: row 100 (held by its shard: skipped, not judged by the new
    // ownership), the change, row 101 (stray), the other tenant's row.
    const second = await run();
    await drain();
    await second.stop();
    // Run 3 replays everything again: all of it is held now.
    const third = await run();
    await drain();
    await third.stop();

    expect(first.strays).toEqual([]);
    expect(second.strays.map((s) => ({ tenant: s.tenantKey, rows: s.rows }))).toEqual([{ tenant, rows: 1 }]);
    expect(third.strays).toEqual([]);
    expect(await writesOf(shard(1), tenant, 100)).toBe(1);
    expect(await writesOf(shard(1), tenant, 101)).toBe(0);
    expect(await writesOf(shard(0), other, 100)).toBe(1);
    expect(await hasAccount(shard(1), tenant, 101)).toBe(false);
  });
});

describe("a reverse stream follows the shard's fence by log position", () => {
  it("carries a tenant only between the message that makes the shard its owner and the one that gives it back", {
    timeout: 120_000,
  }, async () => {
    const planId = crypto.randomUUID();
    const source = shard(0);
    const shardKey = "shard-0-database-id";
    const tenant = "41";
    await installFence(source.pool, {
      planId,
      self: { key: shardKey, name: "shard 0" },
      legacyName: "legacy",
      shardKeyColumn: "tenant_id",
      tables: TABLES,
    });
    const changeFence = fenceChanger(source.pool, planId);

    const reverse = await ensureReverseSlot(source.pool, { planId, shardOrdinal: 0, schema });
    cleanups.push(() => dropReverseSlot(source.pool, { planId, shardOrdinal: 0 }));
    // Idempotent: the same slot, consistent point and publication, which holds sharded tables only.
    expect(await ensureReverseSlot(source.pool, { planId, shardOrdinal: 0, schema })).toEqual(reverse);
    const { rows: published } = await source.pool.query<{ tablename: string }>(
      "select tablename from pg_publication_tables where pubname = $1",
      [reverse.publication],
    );
    expect(published.map((r) => r.tablename)).toEqual(["accounts"]);

    const origin = reverseOriginName(reverse.slot, reverse.slotLsn);
    const runner: CdcRunner = startReverseCdc({
      shardUrl: source.url,
      shard: source.pool,
      shardName: "shard 0",
      slot: reverse.slot,
      slotLsn: reverse.slotLsn,
      publication: reverse.publication,
      legacyUrl: legacy.url,
      legacy: legacy.pool,
      schema,
      route: reverseOwnershipRoute(source.pool, planId),
      log: () => {},
    });
    cleanups.push(() => runner.stop());
    /** Waits until legacy durably holds everything the shard committed so far (the drain back). */
    const drain = async () => {
      const lsn = await changeFence([]);
      const outcome = await waitForOriginProgress(legacy.pool, origin, lsn, Date.now() + 30_000);
      expect(outcome.reached).toBe(true);
    };
    // The stream is open (and read the shard's fence) once it stamped legacy past a change.
    await drain();

    // Before: the shard does not own the tenant (a bypassing write, as the fence refuses others).
    await bypassing(source.pool, "insert into accounts values ($1, 100, 'before')", [tenant]);
    await changeFence([{ tenantKey: tenant, ownerKey: shardKey, frozen: false }]);
    // Owned: the application writes it on the shard.
    await source.pool.query("insert into accounts values ($1, 101, 'owned by the shard')", [tenant]);
    await source.pool.query(
      "update accounts set name = 'updated on the shard' where tenant_id = $1 and id = 101",
      [tenant],
    );
    await changeFence([{ tenantKey: tenant, ownerKey: LEGACY_OWNER_KEY, frozen: false }]);
    // Given back: a bypassing write on the shard is not carried.
    await bypassing(source.pool, "insert into accounts values ($1, 102, 'after')", [tenant]);
    await bypassing(
      source.pool,
      "update accounts set name = 'changed after' where tenant_id = $1 and id = 101",
      [tenant],
    );
    await drain();

    expect(runner.failure ?? null).toBeNull();
    const { rows } = await legacy.pool.query(
      "select id::int, name from accounts where tenant_id = $1 order by id",
      [tenant],
    );
    expect(rows).toEqual([{ id: 101, name: "updated on the shard" }]);
    expect(await writesOf(legacy, tenant, 101)).toBe(2);
  });
});
