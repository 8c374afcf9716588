// Verifying hot tenants on real servers: a tenant written to every few milliseconds, replicated to
// its shard by a small in-test replicator with lag (legacy first, the shard a moment later, and
// the position it has applied up to), is verified row for row; a hot row whose drifted column its
// updates never rewrite is confirmed as drift, not left inconclusive; a lag that never catches up
// leaves the tenant unverified with the reason.
import { setTimeout as delay } from "node:timers/promises";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { introspectSource, type SourceSchema } from "../analysis/introspect";
import { copyChunk } from "../backfill/copy-chunk";
import { prepareShard } from "../backfill/prepare-shards";
import { hashPlacement } from "../router/placement";
import { planTable, type TablePlan } from "../shared/table-plan";
import type { WaitForApplied } from "./recheck";
import { verifyTenant } from "./verify-tenant";

let legacy: TestDatabase;
let shard: TestDatabase;
let schema: SourceSchema;
let plan: TablePlan;
const placement = hashPlacement(1);

async function withClient<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>) {
  const c = await pool.connect();
  try {
    return await fn(c);
  } finally {
    c.release();
  }
}

const lsnNow = async (pool: pg.Pool) =>
  BigInt(
    (await pool.query<{ l: string }>("select (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text as l"))
      .rows[0]?.l ?? 0,
  );

/**
 * Updates `rows` of a tenant on legacy in a loop and applies each update to the shard `lagMs`
 * later, like CDC. `applied` is a position every legacy write below which the shard has: read
 * before a write starts, once the previous one was applied.
 */
function startReplicatedWriter(tenant: number, ids: number[], lagMs: number) {
  let applied = 0n;
  let stopped = false;
  let writes = 0;
  const loop = (async () => {
    const writer = await legacy.pool.connect();
    try {
      // A real replicator keeps confirming while a writer waits for a row lock (its transaction
      // has not committed). This one only moves `applied` between writes, so a write blocked by
      // verifyTenant's FOR SHARE gives up quickly and the loop re-reads the position, as CDC would.
      await writer.query("set lock_timeout = '20ms'");
      while (!stopped) {
        applied = await lsnNow(legacy.pool);
        const id = ids[writes % ids.length] as number;
        let hot: number | undefined;
        try {
          const { rows } = await writer.query<{ hot: number }>(
            "update items set hot = hot + 1 where tenant_id = $1 and id = $2 returning hot",
            [tenant, id],
          );
          hot = rows[0]?.hot;
        } catch (error) {
          if ((error as { code?: string }).code === "55P03") continue;
          throw error;
        }
        await delay(lagMs);
        await shard.pool.query("update items set hot = $3 where tenant_id = $1 and id = $2", [
          tenant,
          id,
          hot,
        ]);
        writes++;
      }
    } finally {
      writer.release();
    }
  })();
  const waitForApplied: WaitForApplied = async (lsn) => {
    const deadline = performance.now() + 20_000;
    while (applied < lsn) {
      if (performance.now() > deadline) throw new Error("the test replicator fell behind");
      await delay(2);
    }
  };
  return {
    waitForApplied,
    writes: () => writes,
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

beforeAll(async () => {
  legacy = await createTestDatabase("verify_legacy");
  shard = await createTestDatabase("verify_shard");
  await legacy.pool.query(`
    create table items (tenant_id int not null, id int not null, hot int not null default 0,
                        big text not null, primary key (tenant_id, id));
    alter table items alter column big set storage external;
    insert into items (tenant_id, id, big)
      select t, i, repeat(md5(i::text), 200) from generate_series(1, 3) t, generate_series(1, 3000) i;
    analyze items;`);
  schema = await withClient(legacy.pool, (c) => introspectSource(c, "tenant_id"));
  await withClient(shard.pool, (c) => prepareShard(c, "shard-0", schema));
  const table = schema.tables.find((t) => t.name === "items");
  if (!table) throw new Error("no items table");
  plan = planTable(table, schema.shardKeyColumn);
  await withClient(legacy.pool, async (source) =>
    withClient(shard.pool, async (target) => {
      let after: string[] | null = null;
      for (;;) {
        const chunk = await copyChunk(source, [target], placement, plan, after, 5_000);
        if (chunk.rows === 0) break;
        after = chunk.lastKey;
      }
    }),
  );
});

afterAll(async () => {
  await legacy?.drop();
  await shard?.drop();
});

describe("verifyTenant", () => {
  it("verifies every row of a tenant written to every few milliseconds", { timeout: 60_000 }, async () => {
    // Hot rows spread over the tenant's key range: whole-tenant rounds never see legacy stand still.
    const hot = [1, 700, 1_400, 2_100, 2_999];
    const writer = startReplicatedWriter(1, hot, 3);
    try {
      await delay(50);
      const verdict = await verifyTenant(
        legacy.pool,
        [shard.pool],
        placement,
        plan,
        { tenant: "1", shard: 0 },
        writer.waitForApplied,
        { backoffMs: 5 },
      );
      expect(verdict.unverifiedReason).toBeNull();
      expect(verdict.differences).toEqual([]);
      expect(verdict.rows).toBe(3_000);
      expect(verdict.rowsVerified).toBe(3_000);
      expect(writer.writes()).toBeGreaterThan(5);
    } finally {
      await writer.stop();
    }
  });

  it("confirms drift in a hot row's column that its updates never rewrite", { timeout: 60_000 }, async () => {
    await shard.pool.query("update items set big = 'drifted' where tenant_id = 2 and id = 1500");
    const writer = startReplicatedWriter(2, [1500], 2);
    try {
      await delay(50);
      const verdict = await verifyTenant(
        legacy.pool,
        [shard.pool],
        placement,
        plan,
        { tenant: "2", shard: 0 },
        writer.waitForApplied,
        { backoffMs: 5 },
      );
      expect(verdict.unverifiedReason).toBeNull();
      expect(verdict.rowsVerified).toBe(3_000);
      expect(verdict.differences.map((d) => [d.kind, d.key, d.columns.map((c) => c.column)])).toEqual([
        ["changed", ["2", "1500"], ["big"]],
      ]);
      expect(verdict.differences[0]?.shardRow?.big).toBe("drifted");
    } finally {
      await writer.stop();
    }
  });

  it("leaves a tenant unverified, with the reason, when CDC does not catch up", async () => {
    await legacy.pool.query("update items set hot = hot + 1 where tenant_id = 3 and id = 10");
    const stuck: WaitForApplied = async () => {
      throw new Error("CDC slot confirmed only up to 0/1 within 60 s");
    };
    const verdict = await verifyTenant(
      legacy.pool,
      [shard.pool],
      placement,
      plan,
      { tenant: "3", shard: 0 },
      stuck,
    );
    expect(verdict.rowsVerified).toBe(0);
    expect(verdict.rows).toBe(3_000);
    expect(verdict.unverifiedReason).toContain("CDC slot confirmed only up to");
    expect(verdict.differences).toEqual([]);
  });

  it("stops at the pass's deadline and says so", async () => {
    const verdict = await verifyTenant(
      legacy.pool,
      [shard.pool],
      placement,
      plan,
      { tenant: "3", shard: 0 },
      async () => {},
      { deadline: performance.now() - 1 },
    );
    expect(verdict.unverifiedReason).toContain("time ran out");
  });
});
