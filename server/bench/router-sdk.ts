// Issue 12's per-query costs, measured on legacy with nothing else running:
//   - the router SDK against a bare pg.Pool on the same database: the same statement sent one
//     at a time through each, in alternating rounds (so drift in the machine's load hits both);
//     the router holds a map of MAP_TENANTS routes, as after many cutovers;
//   - the in-database fence on writes: single-row INSERTs and 500-row INSERTs into a scratch table,
//     without and then with the fence trigger (a fence of MAP_TENANTS routes), in alternating rounds.
// Both are reported as time per statement (or per row) and as the ratio to the bare baseline.
import crypto from "node:crypto";
import type pg from "pg";
import { legacyOnlyMap, staticMapSource } from "@/sdk/map-source";
import type { WireRoutingMap } from "@/sdk/map-types";
import { createRouter } from "@/sdk/router";
import { dropFence, type FenceRoute, installFence, syncFence } from "@/server/engine/routing/fence";
import { dropFenceTriggerSql } from "@/server/engine/routing/fence-sql";
import { type BenchReport, figure } from "./report";

const MAP_TENANTS = 2_000;
const ROUNDS = 6;
const QUERIES_PER_ROUND = 1_500;
const INSERTS_PER_ROUND = 600;
const BULK_STATEMENTS_PER_ROUND = 6;
const BULK_ROWS = 500;
const SCRATCH = "public.bench_fence_scratch";

export interface RoutingOverhead {
  sdk: { bareUs: number; routedUs: number; queries: number };
  fence: {
    singleBareUs: number;
    singleFencedUs: number;
    bulkBareUsPerRow: number;
    bulkFencedUsPerRow: number;
  };
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

async function measureSdk(pool: pg.Pool): Promise<RoutingOverhead["sdk"]> {
  const map: WireRoutingMap = {
    ...legacyOnlyMap("legacy"),
    version: MAP_TENANTS,
    tenants: Array.from({ length: MAP_TENANTS }, (_, i) => ({
      tenant: String(100_000 + i),
      owner: "legacy",
      ownerId: "legacy",
      frozen: false,
      version: i + 1,
    })),
  };
  const router = await createRouter({ databases: { legacy: pool }, map: staticMapSource(map) });
  const sql = "select $1::bigint as tenant";
  let bare = 0;
  let routed = 0;
  try {
    // Warm both paths (connections, prepared plans in the server's cache).
    for (let i = 0; i < 200; i++) {
      await pool.query(sql, [i]);
      await router.forTenant(i).query(sql, [i]);
    }
    for (let round = 0; round < ROUNDS; round++) {
      bare += await timed(async () => {
        for (let i = 0; i < QUERIES_PER_ROUND; i++) await pool.query(sql, [i]);
      });
      routed += await timed(async () => {
        for (let i = 0; i < QUERIES_PER_ROUND; i++)
          await router.forTenant(100_000 + (i % 3000)).query(sql, [i]);
      });
    }
  } finally {
    await router.close();
  }
  const queries = ROUNDS * QUERIES_PER_ROUND;
  return { bareUs: (bare * 1000) / queries, routedUs: (routed * 1000) / queries, queries };
}

async function measureFence(pool: pg.Pool): Promise<RoutingOverhead["fence"]> {
  await pool.query(`drop table if exists ${SCRATCH}`);
  await pool.query(
    `create table ${SCRATCH} (tenant_id bigint not null, id bigserial, payload text not null, primary key (tenant_id, id))`,
  );
  const planId = crypto.randomUUID();
  const tables = [{ qualified: SCRATCH, kind: "sharded" as const }];
  const single = `insert into ${SCRATCH} (tenant_id, payload) values ($1, 'x')`;
  const bulk = `insert into ${SCRATCH} (tenant_id, payload) select 1 + (g % 50), 'bulk' from generate_series(1, ${BULK_ROWS}) g`;
  const runSingles = () =>
    timed(async () => {
      for (let i = 0; i < INSERTS_PER_ROUND; i++) await pool.query(single, [1 + (i % 50)]);
    });
  const runBulk = () =>
    timed(async () => {
      for (let i = 0; i < BULK_STATEMENTS_PER_ROUND; i++) await pool.query(bulk);
    });
  const fenceOn = async () =>
    installFence(pool, {
      planId,
      self: { key: "legacy", name: "legacy" },
      legacyName: "legacy",
      shardKeyColumn: "tenant_id",
      tables,
    });
  const fenceOff = () => dropFence(pool, tables, ["tenant_id"]);
  const sums = { singleBare: 0, singleFenced: 0, bulkBare: 0, bulkFenced: 0 };
  try {
    // A fence as big as a busy map: every tenant but the written ones moved elsewhere.
    await fenceOn();
    const routes: FenceRoute[] = Array.from({ length: MAP_TENANTS }, (_, i) => ({
      tenantKey: String(100_000 + i),
      ownerKey: "00000000-0000-4000-8000-000000000001",
      ownerName: "shard-x",
      frozen: false,
      version: i + 1,
    }));
    await syncFence(pool, { planId, databaseName: "legacy", routes, version: MAP_TENANTS });
    await runSingles(); // warm-up with the trigger
    for (let round = 0; round < ROUNDS; round++) {
      await pool.query(dropFenceTriggerSql(SCRATCH));
      sums.singleBare += await runSingles();
      sums.bulkBare += await runBulk();
      await fenceOn();
      sums.singleFenced += await runSingles();
      sums.bulkFenced += await runBulk();
    }
  } finally {
    await fenceOff().catch(() => {});
    await pool.query(`drop table if exists ${SCRATCH}`).catch(() => {});
  }
  const singles = ROUNDS * INSERTS_PER_ROUND;
  const bulkRows = ROUNDS * BULK_STATEMENTS_PER_ROUND * BULK_ROWS;
  return {
    singleBareUs: (sums.singleBare * 1000) / singles,
    singleFencedUs: (sums.singleFenced * 1000) / singles,
    bulkBareUsPerRow: (sums.bulkBare * 1000) / bulkRows,
    bulkFencedUsPerRow: (sums.bulkFenced * 1000) / bulkRows,
  };
}

export async function measureRoutingOverhead(
  pool: pg.Pool,
  log: (line: string) => void,
): Promise<RoutingOverhead> {
  const sdk = await measureSdk(pool);
  log(
    `    router SDK: ${sdk.routedUs.toFixed(1)} µs/query vs bare pg.Pool ${sdk.bareUs.toFixed(1)} µs/query`,
  );
  const fence = await measureFence(pool);
  log(
    `    fence: single-row insert ${fence.singleFencedUs.toFixed(1)} µs vs ${fence.singleBareUs.toFixed(1)} µs; ` +
      `${BULK_ROWS}-row insert ${fence.bulkFencedUsPerRow.toFixed(2)} µs/row vs ${fence.bulkBareUsPerRow.toFixed(2)} µs/row`,
  );
  return { sdk, fence };
}

export function addRoutingFigures(report: BenchReport, overhead: RoutingOverhead): void {
  report.add({
    figure: figure("router.sdk.us_per_query", overhead.sdk.routedUs, "µs", overhead.sdk.bareUs),
    label: `router SDK, one query at a time (map of ${MAP_TENANTS} routes)`,
    baselineLabel: "bare pg.Pool",
    aim: { text: "ratio ≤ 1.1", check: (f) => (f.ratio ?? Number.POSITIVE_INFINITY) <= 1.1 },
  });
  report.add({
    figure: figure(
      "fence.insert_single.us",
      overhead.fence.singleFencedUs,
      "µs",
      overhead.fence.singleBareUs,
    ),
    label: "fence trigger: single-row INSERT, autocommit",
    baselineLabel: "no trigger",
  });
  report.add({
    figure: figure(
      "fence.insert_bulk.us_per_row",
      overhead.fence.bulkFencedUsPerRow,
      "µs/row",
      overhead.fence.bulkBareUsPerRow,
    ),
    label: `fence trigger: ${BULK_ROWS}-row INSERT, per row`,
    baselineLabel: "no trigger",
  });
}
