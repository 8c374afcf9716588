// Parity on real servers: an exact copy of the demo dataset compares clean chunk by chunk; rows
// tampered with on a shard are found, located down to the row and column, and re-checked after
// the (simulated) replication lag so that lag is never reported as drift.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadDemoDataset } from "@/server/demo/dataset";
import { introspectSource, type SourceSchema } from "@/server/engine/analysis/introspect";
import { copyChunk } from "@/server/engine/backfill/copy-chunk";
import { prepareShard } from "@/server/engine/backfill/prepare-shards";
import { hashPlacement, type Placement } from "@/server/engine/router/placement";
import { planTable, type TablePlan } from "@/server/engine/shared/table-plan";
import { createTestDatabase, type TestDatabase } from "@/server/testing/databases";
import {
  type ChunkMismatch,
  chunkBoundaries,
  chunkTargetRows,
  compareChunk,
  compareTenants,
  fullPass,
  type KeyRange,
  type KeyValues,
  locate,
  type RowDifference,
  rangesFromBoundaries,
} from "./chunk-hash";
import { confirmDifferences, confirmRowDifference, slotCatchUp } from "./recheck";
import { withParitySession } from "./session";

const DATASET = { tenants: 300, rows: 40_000, seed: 7 };

let legacy: TestDatabase;
let shards: TestDatabase[];
let schema: SourceSchema;
let placement: Placement;

async function withClient<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>) {
  const c = await pool.connect();
  try {
    return await fn(c);
  } finally {
    c.release();
  }
}

function planOf(name: string): TablePlan {
  const table = schema.tables.find((t) => t.name === name);
  if (!table) throw new Error(`no ${name} table in the demo schema`);
  return planTable(table, schema.shardKeyColumn);
}

const noWait = async () => {};

beforeAll(async () => {
  legacy = await createTestDatabase("parity_legacy");
  shards = [await createTestDatabase("parity_shard0"), await createTestDatabase("parity_shard1")];
  placement = hashPlacement(shards.length);
  await loadDemoDataset(legacy.pool, DATASET);
  schema = await withClient(legacy.pool, (c) => introspectSource(c, "tenant_id"));
  for (const [i, shard] of shards.entries())
    await withClient(shard.pool, (c) => prepareShard(c, `shard-${i}`, schema));
  await withClient(legacy.pool, async (source) => {
    const targets = await Promise.all(shards.map((s) => s.pool.connect()));
    try {
      for (const table of schema.tables) {
        const plan = planTable(table, schema.shardKeyColumn);
        let after: string[] | null = null;
        for (;;) {
          const chunk = await copyChunk(source, targets, placement, plan, after, 5_000);
          if (chunk.rows === 0) break;
          after = chunk.lastKey;
        }
      }
    } finally {
      for (const t of targets) t.release();
    }
  });
  // Fresh statistics, so chunk sizes follow the real row counts.
  await legacy.pool.query("analyze");
});

afterAll(async () => {
  await legacy?.drop();
  for (const shard of shards ?? []) await shard.drop();
});

async function totalRows(pool: pg.Pool): Promise<number> {
  let total = 0;
  for (const t of schema.tables) {
    total += Number((await pool.query(`select count(*)::int as n from ${t.qualified}`)).rows[0].n);
  }
  return total;
}

/** Compares every chunk of one table and returns the mismatched ones with their range. */
async function compareTable(plan: TablePlan, shardDbs: pg.Pool[] = shards.map((s) => s.pool)) {
  const ranges = rangesFromBoundaries(await chunkBoundaries(legacy.pool, plan));
  const mismatched: { range: KeyRange; mismatch: ChunkMismatch }[] = [];
  let rowsVerified = 0;
  for (const range of ranges) {
    const comparison = await compareChunk(legacy.pool, shardDbs, placement, plan, range);
    rowsVerified += comparison.rowsVerified;
    for (const mismatch of comparison.mismatches) mismatched.push({ range, mismatch });
  }
  return { ranges, mismatched, rowsVerified };
}

async function locateAll(plan: TablePlan, mismatched: { range: KeyRange; mismatch: ChunkMismatch }[]) {
  const differences: RowDifference[] = [];
  let rangesHashed = 0;
  for (const { range, mismatch } of mismatched) {
    const located = await locate(
      legacy.pool,
      shards.map((s) => s.pool),
      placement,
      plan,
      range,
      mismatch,
    );
    differences.push(...located.differences);
    rangesHashed += located.rangesHashed;
  }
  return { differences, rangesHashed };
}

describe("chunk boundaries", () => {
  it("sizes chunks to the table: ~64 chunks, 5,000 to 50,000 rows each", () => {
    expect(chunkTargetRows(0)).toBe(5_000);
    expect(chunkTargetRows(640_000)).toBe(10_000);
    expect(chunkTargetRows(1e9)).toBe(50_000);
    expect(chunkTargetRows(Number.NaN)).toBe(5_000);
  });

  it("cuts a table into ranges that cover every row exactly once", async () => {
    const plan = planOf("events");
    const boundaries = await chunkBoundaries(legacy.pool, plan, 1_000);
    const ranges = rangesFromBoundaries(boundaries);
    expect(ranges.length).toBe(boundaries.length + 1);
    const n = Number((await legacy.pool.query("select count(*)::int as n from events")).rows[0].n);
    expect(boundaries.length).toBe(Math.floor(n / 1_000));
    let covered = 0;
    for (const range of ranges) {
      const comparison = await compareChunk(
        legacy.pool,
        shards.map((s) => s.pool),
        placement,
        plan,
        range,
      );
      expect(comparison.legacyRows).toBeLessThanOrEqual(1_000);
      covered += comparison.legacyRows;
    }
    expect(covered).toBe(n);
  });
});

describe("full pass", () => {
  it("finds an exact copy clean, every row verified, and measures the rate", async () => {
    const expectedRows = await totalRows(legacy.pool);
    expect(expectedRows).toBe(DATASET.rows);

    // The bare aggregate on legacy alone, per table, as the yardstick (first run warms the cache).
    const bare = async () => {
      const startedAt = performance.now();
      for (const t of schema.tables) {
        await legacy.pool.query(`select sum(hashtextextended(x::text, 0)) from ${t.qualified} x`);
      }
      return performance.now() - startedAt;
    };
    await bare();
    const bareMs = Math.min(await bare(), await bare());

    const progress: string[] = [];
    const result = await fullPass(
      legacy.pool,
      shards.map((s) => s.pool),
      placement,
      schema,
      (p) => progress.push(`${p.table} ${p.chunk}/${p.chunks}`),
    );
    expect(result.mismatchedChunks).toEqual([]);
    expect(result.rowsVerified).toBe(expectedRows);
    expect(result.legacyRows).toBe(expectedRows);
    expect(progress).toHaveLength(schema.tables.length); // once per table, when it was compared
    expect(result.chunks).toBeGreaterThanOrEqual(schema.tables.length);
    // Small page ranges (many chunks per table, sums added up per tenant) give the same verdict.
    const fine = await fullPass(
      legacy.pool,
      shards.map((s) => s.pool),
      placement,
      schema,
      undefined,
      undefined,
      8,
    );
    expect(fine.mismatchedChunks).toEqual([]);
    expect(fine.rowsVerified).toBe(expectedRows);
    expect(fine.chunks).toBeGreaterThan(schema.tables.length * 2);
    const again = await fullPass(
      legacy.pool,
      shards.map((s) => s.pool),
      placement,
      schema,
    );
    const ms = Math.min(result.ms, again.ms);

    const rate = (rows: number, millis: number) => Math.round(rows / (millis / 1000)).toLocaleString("en-US");
    console.log(
      `parity full pass: ${expectedRows} rows in ${result.chunks} chunks, ${ms} ms = ${rate(expectedRows, ms)} rows verified/s ` +
        `(legacy + 2 shards hashed); bare sum(hashtextextended(x::text, 0)) on legacy alone: ` +
        `${Math.round(bareMs)} ms = ${rate(expectedRows, bareMs)} rows/s`,
    );
  });

  it("paces every side, shards too, in chunks of at most the throttle's rows", async () => {
    // Before, only legacy's chunks waited for tokens: the shards scanned their share flat out (a
    // core each, on the bench's two), and chunks were 4,096 pages whatever the rate. This fails
    // with sides [0] and chunks over the bound.
    const asked: { side: number; rows: number }[] = [];
    const result = await fullPass(
      legacy.pool,
      shards.map((s) => s.pool),
      placement,
      schema,
      undefined,
      {
        maxChunkRows: 2_000,
        async take(side, rows) {
          asked.push({ side, rows });
        },
      },
    );
    expect(result.mismatchedChunks).toEqual([]);
    expect([...new Set(asked.map((a) => a.side))].sort()).toEqual([0, 1, 2]);
    expect(Math.max(...asked.map((a) => a.rows))).toBeLessThanOrEqual(2_000);
    // The largest table really was cut to the bound on every side (not one chunk below it).
    for (const side of [0, 1, 2]) expect(asked.filter((a) => a.side === side).length).toBeGreaterThan(8);
  });

  it("pins rendering settings: a shard pool with other session defaults still compares clean", async () => {
    // Every setting that changes a rendering differs from legacy's on these connections.
    const odd = (url: string) =>
      new pg.Pool({
        connectionString: url,
        max: 1,
        options:
          "-c TimeZone=Asia/Kolkata -c DateStyle=German,DMY -c IntervalStyle=iso_8601 -c extra_float_digits=0 -c bytea_output=escape",
      });
    const oddShards = shards.map((s) => odd(s.url));
    try {
      const naive = async (pool: pg.Pool) =>
        (await pool.query("select sum(hashtextextended(x::text, 0))::text as h from events x")).rows[0].h;
      // Without pinning, the same rows hash differently: the trap this module exists for.
      expect(await naive(oddShards[0] as pg.Pool)).not.toBe(await naive(shards[0]?.pool as pg.Pool));

      const { mismatched, rowsVerified } = await compareTable(planOf("events"), oddShards);
      expect(mismatched).toEqual([]);
      expect(rowsVerified).toBe(
        Number((await legacy.pool.query("select count(*)::int n from events")).rows[0].n),
      );

      // The settings were reset: the connection is back to its own defaults.
      const { rows } = await (oddShards[0] as pg.Pool).query(
        "select current_setting('TimeZone') as tz, current_setting('default_transaction_read_only') as ro",
      );
      expect(rows[0]).toEqual({ tz: "Asia/Kolkata", ro: "off" });
      await withParitySession(oddShards[0] as pg.Pool, async (c) => {
        const pinned = await c.query("select current_setting('TimeZone') as tz");
        expect(pinned.rows[0].tz).toBe("UTC");
      });
    } finally {
      await Promise.all(oddShards.map((p) => p.end()));
    }
  });
});

function compareKeys(a: KeyValues, b: KeyValues): number {
  for (let i = 0; i < a.length; i++) {
    const x = BigInt(a[i] ?? 0);
    const y = BigInt(b[i] ?? 0);
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

function inRange(key: KeyValues, range: KeyRange): boolean {
  return (
    (range.after === null || compareKeys(key, range.after) > 0) &&
    (range.upTo === null || compareKeys(key, range.upTo) <= 0)
  );
}

describe("drift in a sharded table", () => {
  it("finds an updated, a deleted and an extra row on a shard, down to the row and column", async () => {
    const plan = planOf("events");
    const shard = shards[0]?.pool as pg.Pool;
    // The three biggest tenants on shard 0: their rows span chunks and need bisecting.
    const { rows: tenants } = await legacy.pool.query<{ tenant_id: string; n: number }>(
      "select tenant_id::text, count(*)::int as n from events group by tenant_id order by n desc, tenant_id",
    );
    const onShard0 = tenants.filter((t) => placement.shardFor(t.tenant_id) === 0).slice(0, 3);
    const [updated, deleted, inserted] = onShard0;
    if (!updated || !deleted || !inserted) throw new Error("fewer than 3 tenants with events on shard 0");
    expect(updated.n).toBeGreaterThan(200);

    const middle = async (tenant: { tenant_id: string; n: number }) => {
      const { rows } = await legacy.pool.query<{ id: string; kind: string }>(
        "select id::text, kind from events where tenant_id = $1 order by id offset $2 limit 1",
        [tenant.tenant_id, Math.floor(tenant.n / 2)],
      );
      if (!rows[0]) throw new Error(`tenant ${tenant.tenant_id} has no events`);
      return rows[0];
    };
    const u = await middle(updated);
    const d = await middle(deleted);
    // A free id in the middle of the tenant's rows (ids are global, so there are gaps per tenant).
    const { rows: gap } = await legacy.pool.query<{ id: string; from_id: string }>(
      `select (e.id + 1)::text as id, e.id::text as from_id from events e
        where e.tenant_id = $1 and not exists (select 1 from events f where f.tenant_id = e.tenant_id and f.id = e.id + 1)
        order by e.id offset $2 limit 1`,
      [inserted.tenant_id, Math.floor(inserted.n / 2)],
    );
    const extra = gap[0];
    if (!extra) throw new Error("no gap in the tenant's ids");

    await shard.query("update events set kind = kind || '.tampered' where tenant_id = $1 and id = $2", [
      updated.tenant_id,
      u.id,
    ]);
    await shard.query("delete from events where tenant_id = $1 and id = $2", [deleted.tenant_id, d.id]);
    await shard.query(
      `insert into events (tenant_id, id, kind, actor_id, payload, created_at)
       select tenant_id, $3, 'tampered.insert', actor_id, payload, created_at from events where tenant_id = $1 and id = $2`,
      [inserted.tenant_id, extra.from_id, extra.id],
    );

    const keys = {
      updated: [updated.tenant_id, u.id],
      deleted: [deleted.tenant_id, d.id],
      inserted: [inserted.tenant_id, extra.id],
    };
    const { ranges, mismatched } = await compareTable(plan);
    // Exactly the three tenants, each on shard 0, each in the chunk that holds its tampered key.
    expect(
      mismatched
        .map(({ mismatch }) => ({ tenant: mismatch.tenant, shard: mismatch.shard }))
        .sort((a, b) => compareKeys([a.tenant ?? "0"], [b.tenant ?? "0"])),
    ).toEqual(
      [updated, deleted, inserted]
        .map((t) => ({ tenant: t.tenant_id, shard: 0 }))
        .sort((a, b) => compareKeys([a.tenant], [b.tenant])),
    );
    for (const { range, mismatch } of mismatched) {
      const key = Object.values(keys).find((k) => k[0] === mismatch.tenant) as KeyValues;
      expect(inRange(key, range)).toBe(true);
      expect(ranges.filter((r) => inRange(key, r))).toHaveLength(1);
      const delta = mismatch.actual.rows - mismatch.expected.rows;
      expect(delta).toBe(
        mismatch.tenant === deleted.tenant_id ? -1 : mismatch.tenant === inserted.tenant_id ? 1 : 0,
      );
    }

    // The recent pass's form: whole tenants, one statement per side, finds the same three (and
    // verifies the untouched tenants beside them, on both shards).
    const clean = tenants.filter((t) => !onShard0.includes(t)).slice(0, 4);
    const byTenants = await compareTenants(
      legacy.pool,
      shards.map((s) => s.pool),
      placement,
      plan,
      [...onShard0, ...clean].map((t) => t.tenant_id),
    );
    expect(
      byTenants.mismatches.map((m) => [m.tenant, m.shard, m.actual.rows - m.expected.rows]).sort(),
    ).toEqual(
      [
        [updated.tenant_id, 0, 0],
        [deleted.tenant_id, 0, -1],
        [inserted.tenant_id, 0, 1],
      ].sort(),
    );
    expect(new Set(clean.map((t) => placement.shardFor(t.tenant_id))).size).toBe(2);
    expect(byTenants.rowsVerified).toBe(clean.reduce((n, t) => n + t.n, 0));
    expect(byTenants.legacyRows).toBe([...onShard0, ...clean].reduce((n, t) => n + t.n, 0));

    const { differences, rangesHashed } = await locateAll(plan, mismatched);
    expect(rangesHashed).toBeGreaterThan(mismatched.length); // it bisected
    expect(differences).toHaveLength(3);
    const byKind = Object.fromEntries(differences.map((x) => [x.kind, x]));
    expect(byKind.changed).toMatchObject({
      table: '"public"."events"',
      shard: 0,
      tenant: updated.tenant_id,
      key: keys.updated,
      columns: [{ column: "kind", legacy: u.kind, shard: `${u.kind}.tampered` }],
    });
    expect(byKind.missing).toMatchObject({
      shard: 0,
      tenant: deleted.tenant_id,
      key: keys.deleted,
      shardRow: null,
    });
    expect(byKind.missing?.legacyRow?.id).toBe(d.id);
    expect(byKind.extra).toMatchObject({
      shard: 0,
      tenant: inserted.tenant_id,
      key: keys.inserted,
      legacyRow: null,
    });
    expect(byKind.extra?.shardRow?.kind).toBe("tampered.insert");

    // The full pass reports the same chunks, and verifies every other row.
    const pass = await fullPass(
      legacy.pool,
      shards.map((s) => s.pool),
      placement,
      schema,
    );
    const passMismatches = pass.mismatchedChunks.flatMap((c) => c.mismatches);
    expect(passMismatches.map((m) => m.tenant).sort()).toEqual(
      mismatched.map((m) => m.mismatch.tenant).sort(),
    );
    const unverified = passMismatches.reduce((n, m) => n + m.expected.rows, 0);
    expect(pass.rowsVerified).toBe(pass.legacyRows - unverified);
  });

  it("finds rows a shard holds for a tenant it does not own", async () => {
    const plan = planOf("invoice_lines");
    const { rows } = await legacy.pool.query<{ tenant_id: string }>(
      "select distinct tenant_id::text from invoice_lines order by 1",
    );
    const foreign = rows.find((r) => placement.shardFor(r.tenant_id) === 0);
    if (!foreign) throw new Error("no tenant with invoice lines on shard 0");
    const stray = shards[1]?.pool as pg.Pool;
    await withClient(stray, async (c) => {
      await c.query("begin");
      await c.query("set local session_replication_role = replica"); // no tenant row for it on shard 1
      await c.query("insert into invoice_lines values ($1, 999999, 1, 'stray', 1, 100)", [foreign.tenant_id]);
      await c.query("commit");
    });
    const { mismatched } = await compareTable(plan);
    expect(mismatched.map((m) => m.mismatch)).toEqual([
      {
        tenant: foreign.tenant_id,
        shard: 1,
        expected: { rows: 0, hash: "0" },
        actual: expect.objectContaining({ rows: 1 }),
      },
    ]);
    const { differences } = await locateAll(plan, mismatched);
    expect(differences).toMatchObject([{ kind: "extra", shard: 1, key: [foreign.tenant_id, "999999", "1"] }]);
    // Re-checked: legacy has the row nowhere near shard 1, so it is confirmed (after two rounds).
    const [checked] = await confirmDifferences(
      legacy.pool,
      shards.map((s) => s.pool),
      placement,
      plan,
      differences,
      noWait,
    );
    expect(checked?.recheck).toMatchObject({ status: "confirmed", kind: "extra", rounds: 2 });
  });
});

describe("drift in reference tables", () => {
  it("is found on the tampered shard only", async () => {
    const shard1 = shards[1]?.pool as pg.Pool;
    const { rows } = await legacy.pool.query<{ id: string; name: string }>(
      "select id::text, name from billing_plans order by id limit 1",
    );
    const plan0 = rows[0];
    if (!plan0) throw new Error("no billing plans");
    await shard1.query("update billing_plans set name = name || ' (edited)' where id = $1", [plan0.id]);
    await shard1.query("insert into currencies values ('ZZZ', 'Tamper', 2)");

    const plans = planOf("billing_plans");
    const billing = await compareTable(plans);
    expect(billing.mismatched.map((m) => ({ tenant: m.mismatch.tenant, shard: m.mismatch.shard }))).toEqual([
      { tenant: null, shard: 1 },
    ]);
    expect((await locateAll(plans, billing.mismatched)).differences).toMatchObject([
      {
        kind: "changed",
        shard: 1,
        tenant: null,
        key: [plan0.id],
        columns: [{ column: "name", legacy: plan0.name, shard: `${plan0.name} (edited)` }],
      },
    ]);

    const currencies = planOf("currencies");
    const found = await compareTable(currencies);
    expect(found.mismatched.map((m) => m.mismatch.shard)).toEqual([1]);
    expect((await locateAll(currencies, found.mismatched)).differences).toMatchObject([
      { kind: "extra", shard: 1, tenant: null, key: ["ZZZ"], shardRow: { code: "ZZZ", name: "Tamper" } },
    ]);
  });
});

describe("re-check after the lag", () => {
  async function taskKeys(shard: number, count: number): Promise<KeyValues[]> {
    const { rows } = await legacy.pool.query<{ tenant_id: string; id: string }>(
      "select tenant_id::text, id::text from tasks order by tenant_id, id",
    );
    return rows
      .filter((r) => placement.shardFor(r.tenant_id) === shard)
      .slice(0, count)
      .map((r) => [r.tenant_id, r.id]);
  }

  it("confirms real drift, resolves lag, and calls a moving row inconclusive", async () => {
    const plan = planOf("tasks");
    const shard = shards[1]?.pool as pg.Pool;
    const [tampered, lagging, moving, deleted, ...rest] = await taskKeys(1, 6);
    if (!tampered || !lagging || !moving || !deleted || rest.length < 2)
      throw new Error("too few tasks on shard 1");
    const where = "where tenant_id = $1 and id = $2";

    // Real drift: the shard's title differs, and nothing is replicating.
    await shard.query(`update tasks set title = 'tampered' ${where}`, tampered);
    const confirmed = await confirmRowDifference(legacy.pool, shard, plan, tampered, noWait);
    expect(confirmed).toMatchObject({ status: "confirmed", kind: "changed", rounds: 1 });
    expect(confirmed.columns.map((c) => [c.column, c.shard])).toEqual([["title", "tampered"]]);
    expect(confirmed.columns[0]?.legacy).toBe(confirmed.legacyRow?.title);

    await shard.query(`delete from tasks ${where}`, deleted);
    expect(await confirmRowDifference(legacy.pool, shard, plan, deleted, noWait)).toMatchObject({
      status: "confirmed",
      kind: "missing",
      shardRow: null,
    });

    // Lag: legacy moved on, the shard is stale until "CDC" applies the change inside waitForApplied.
    await legacy.pool.query(`update tasks set priority = priority + 1 ${where}`, lagging);
    const afterWrite = BigInt(
      (await legacy.pool.query("select (pg_current_wal_lsn() - '0/0'::pg_lsn)::text as l")).rows[0].l,
    );
    let waitedFor = 0n;
    const resolved = await confirmRowDifference(legacy.pool, shard, plan, lagging, async (lsn) => {
      waitedFor = lsn;
      await shard.query(`update tasks set priority = priority + 1 ${where}`, lagging);
    });
    expect(resolved).toMatchObject({ status: "resolved", kind: null });
    expect(waitedFor).toBe(resolved.legacyLsn);
    expect(waitedFor).toBeGreaterThanOrEqual(afterWrite);

    // A write to the legacy row during the check: no verdict this round.
    const inconclusive = await confirmRowDifference(
      legacy.pool,
      shard,
      plan,
      moving,
      () => legacy.pool.query(`update tasks set title = title || '+' ${where}`, moving).then(() => {}),
      { maxRounds: 1 },
    );
    expect(inconclusive).toMatchObject({ status: "inconclusive", rounds: 1 });

    // A batch: the moving row settles on the second round once CDC catches up; the tampered row stays drift.
    let calls = 0;
    const batch = await confirmDifferences(
      legacy.pool,
      shards.map((s) => s.pool),
      placement,
      plan,
      [tampered, moving].map((key) => ({
        table: plan.table.qualified,
        shard: 1,
        tenant: key[0] ?? null,
        key,
        kind: "changed" as const,
        columns: [],
        legacyRow: null,
        shardRow: null,
      })),
      async () => {
        calls++;
        if (calls === 1) await legacy.pool.query(`update tasks set title = title || '+' ${where}`, moving);
        const { rows } = await legacy.pool.query<{ title: string }>(
          `select title from tasks ${where}`,
          moving,
        );
        await shard.query(`update tasks set title = $3 ${where}`, [...moving, rows[0]?.title]);
      },
    );
    expect(batch.map((b) => [b.recheck.status, b.recheck.rounds])).toEqual([
      ["confirmed", 1],
      ["resolved", 2],
    ]);
    expect(calls).toBe(2);
  });

  it("waits for a replication slot to confirm the legacy position", async () => {
    const slot = `parity_recheck_${process.pid}`;
    await legacy.pool.query("select pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);
    try {
      const [key] = await taskKeys(0, 1);
      if (!key) throw new Error("no task on shard 0");
      await legacy.pool.query("update tasks set priority = priority where tenant_id = $1 and id = $2", key);
      // Nobody consumes the slot: the wait gives up with a message that says what to do.
      await expect(slotCatchUp(legacy.pool, slot, { timeoutMs: 200 })(2n ** 40n)).rejects.toThrow(
        /lag is too high to re-check parity now/,
      );
      await expect(slotCatchUp(legacy.pool, "no_such_slot", { timeoutMs: 200 })(1n)).rejects.toThrow(
        /does not exist on legacy/,
      );
      // A consumer confirming the position (here: advancing the slot) releases the re-check.
      let advancing = true;
      const advance = (async () => {
        const deadline = performance.now() + 10_000;
        while (advancing && performance.now() < deadline) {
          await legacy.pool.query("select pg_replication_slot_advance($1, pg_current_wal_insert_lsn())", [
            slot,
          ]);
        }
      })();
      try {
        const result = await confirmRowDifference(
          legacy.pool,
          shards[0]?.pool as pg.Pool,
          planOf("tasks"),
          key,
          slotCatchUp(legacy.pool, slot, { timeoutMs: 10_000 }),
        );
        expect(result.status).toBe("resolved");
      } finally {
        advancing = false;
        await advance;
      }
    } finally {
      await legacy.pool.query("select pg_drop_replication_slot($1)", [slot]);
    }
  });
});
