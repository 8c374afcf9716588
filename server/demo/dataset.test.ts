// Integration tests for the demo monolith: a real load into a real PostgreSQL database, then the live
// write workload against it. Each test owns its database.
import { afterEach, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "@/server/testing/databases";
import { DEMO_SHARD_KEY, isDemoDatasetLoaded, loadDemoDataset, summarizeDemoDataset } from "./dataset";
import { startWriteWorkload, type WriteWorkloadStats } from "./workload";
import { createRandom, createZipfSampler } from "./zipf";

const databases: TestDatabase[] = [];

// Seed-dependent columns only: timestamps move with now().
const FINGERPRINT_SQL = `
  select md5(string_agg(concat_ws(':', tenant_id, id, project_id, title, status, assignee_id), ',' order by tenant_id, id))
    as hash from tasks`;

async function freshDatabase(prefix: string): Promise<TestDatabase> {
  const database = await createTestDatabase(prefix);
  databases.push(database);
  return database;
}

afterEach(async () => {
  await Promise.all(databases.splice(0).map((database) => database.drop()));
});

/** Polls until `check` returns a value, or fails with `what` after the deadline. */
async function waitFor<T>(what: string, timeoutMs: number, check: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("zipf sampler", () => {
  it("favours low ranks with the expected share", () => {
    const draw = createZipfSampler(1_000, 1, createRandom(1));
    const hits = new Array<number>(1_000).fill(0);
    for (let i = 0; i < 100_000; i++) {
      const rank = draw();
      hits[rank] = (hits[rank] ?? 0) + 1;
    }
    // P(rank 0) = 1 / H(1000) ≈ 13.4%.
    expect((hits[0] ?? 0) / 100_000).toBeGreaterThan(0.12);
    expect((hits[0] ?? 0) / 100_000).toBeLessThan(0.15);
    expect(hits[0]).toBeGreaterThan((hits[9] ?? 0) * 5);
  });
});

describe("demo dataset", () => {
  it("loads a skewed multi-tenant schema and takes a live write workload", async () => {
    const { pool } = await freshDatabase("demo_dataset");
    expect(await isDemoDatasetLoaded(pool)).toBe(false);

    const progress: string[] = [];
    const summary = await loadDemoDataset(pool, {
      tenants: 2_000,
      rows: 60_000,
      seed: 7,
      onProgress: (message) => progress.push(message),
    });
    expect(summary.tenants).toBe(2_000);
    expect(summary.totalRows).toBe(60_000);
    expect(summary.tables.length).toBeGreaterThanOrEqual(6);
    expect(progress.at(-1)).toMatch(/loaded/);
    expect(await isDemoDatasetLoaded(pool)).toBe(true);

    const tables = await pool.query<{
      name: string;
      has_key: boolean;
      has_pk: boolean;
      sequential_id: boolean;
    }>(
      `select c.relname as name,
         exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = $1 and not a.attisdropped) as has_key,
         exists (select from pg_constraint k where k.conrelid = c.oid and k.contype = 'p') as has_pk,
         exists (select from information_schema.columns col
                 where col.table_schema = 'public' and col.table_name = c.relname and col.column_name = 'id'
                   and (col.is_identity = 'YES' or col.column_default like 'nextval(%')) as sequential_id
       from pg_class c
       where c.relnamespace = 'public'::regnamespace and c.relkind = 'r' and c.relpersistence = 'p'`,
      [DEMO_SHARD_KEY],
    );
    expect(tables.rows.length).toBeGreaterThanOrEqual(6);
    expect(tables.rows.every((table) => table.has_pk)).toBe(true);
    expect(tables.rows.filter((table) => !table.has_key).map((table) => table.name)).toContain("currencies");
    expect(tables.rows.filter((table) => table.sequential_id).map((table) => table.name)).toContain(
      "invoices",
    );

    const compositeForeignKeys = await pool.query(
      `select conname from pg_constraint
       where contype = 'f' and connamespace = 'public'::regnamespace and array_length(conkey, 1) > 1`,
    );
    expect(compositeForeignKeys.rowCount).toBeGreaterThan(0);

    const shardedTables = summary.tables.filter((table) => table.sharded).map((table) => table.name);
    const perTenant = await pool.query<{ max: number; median: number }>(
      `select max(n)::int as max, percentile_cont(0.5) within group (order by n) as median
       from (select tenant_id, count(*) as n from (
         ${shardedTables.map((table) => `select tenant_id from ${table}`).join(" union all ")}
       ) rows group by tenant_id) per_tenant`,
    );
    const { max, median } = perTenant.rows[0] ?? { max: 0, median: 0 };
    expect(max).toBeGreaterThan(5 * median);
    expect(max / summary.totalRows).toBeGreaterThan(0.02);

    const errors: unknown[] = [];
    const workload = startWriteWorkload(pool, {
      writesPerSecond: 200,
      onError: (error) => errors.push(error),
    });
    let stats: WriteWorkloadStats;
    try {
      stats = await waitFor("100 workload writes", 20_000, () => {
        const current = workload.stats();
        return current.inserts + current.updates + current.deletes >= 100 || current.errors > 0
          ? current
          : undefined;
      });
    } finally {
      await workload.stop();
    }
    expect(errors).toEqual([]);
    expect(stats.errors).toBe(0);
    expect(stats.inserts).toBeGreaterThan(0);
    expect(stats.updates).toBeGreaterThan(0);
    expect(stats.writesPerSecondObserved).toBeGreaterThan(0);
    expect(() => workload.setRate(-1)).toThrow(/≥ 0/);

    // After stop() nothing is in flight: the counts hold still.
    const after = await summarizeDemoDataset(pool);
    expect(after.totalRows).not.toBe(summary.totalRows);
    expect(after.tables.find((table) => table.name === "events")?.rows).not.toBe(
      summary.tables.find((table) => table.name === "events")?.rows,
    );
    const settled = workload.stats();
    expect((await summarizeDemoDataset(pool)).totalRows).toBe(after.totalRows);
    expect(workload.stats().inserts).toBe(settled.inserts);
  });

  it("treats a half-finished load as not loaded and replaces it with a clean, reproducible one", async () => {
    const { pool } = await freshDatabase("demo_dataset_crash");
    // What a crash mid-load would leave behind: some tables, no completion marker.
    await pool.query("create table tenants (tenant_id bigint primary key, name text)");
    await pool.query("insert into tenants values (1, 'left over')");
    expect(await isDemoDatasetLoaded(pool)).toBe(false);
    await expect(summarizeDemoDataset(pool)).rejects.toThrow(/not \(completely\) loaded/);

    const options = { tenants: 300, rows: 12_000, seed: 3 };
    const first = await loadDemoDataset(pool, options);
    expect(await isDemoDatasetLoaded(pool)).toBe(true);
    expect(first.tenants).toBe(300);
    expect(first.totalRows).toBe(12_000);

    // Reloading over a complete load starts clean too, and the same seed gives the same data.
    const firstFingerprint = await pool.query<{ hash: string }>(FINGERPRINT_SQL);
    const second = await loadDemoDataset(pool, options);
    expect(second.tables).toEqual(first.tables);
    const secondFingerprint = await pool.query<{ hash: string }>(FINGERPRINT_SQL);
    expect(secondFingerprint.rows[0]?.hash).toBe(firstFingerprint.rows[0]?.hash);
  });

  it("counts workload errors without crashing when there is nothing to write to", async () => {
    const { pool } = await freshDatabase("demo_workload_empty");
    const errors: unknown[] = [];
    const workload = startWriteWorkload(pool, {
      writesPerSecond: 50,
      onError: (error) => errors.push(error),
    });
    try {
      await waitFor("a reported error", 10_000, () => (workload.stats().errors > 0 ? true : undefined));
    } finally {
      await workload.stop();
    }
    expect(String(errors[0])).toMatch(/Load the demo dataset/);
    expect(workload.stats().inserts + workload.stats().updates + workload.stats().deletes).toBe(0);
  });

  it("refuses a size it cannot fill, saying what to change", async () => {
    const { pool } = await freshDatabase("demo_dataset_invalid");
    await expect(loadDemoDataset(pool, { tenants: 2_000, rows: 5_000 })).rejects.toThrow(
      /raise rows or lower tenants/,
    );
    expect(await isDemoDatasetLoaded(pool)).toBe(false);
  });
});
