// `npm run bench`: the engine's throughput and latency against plain-PostgreSQL baselines, on the
// same generated data and the same servers, in one run.
//
// Steps (numbered as logged):
//   1. servers    control plane, legacy and the shards, each its own embedded PostgreSQL 18
//   2. dataset    the demo SaaS dataset on legacy, plus bench_probe (before any movement starts, so
//                 it is published and created on the shards like every other table)
//   3. raw COPY   the baseline for the backfill, into separate `raw` databases on the shard servers;
//                 then, emptied, the same databases take the bare chunk loop (a diagnostic in between)
//   4. backfill   movement 1 through the real worker at 1,000,000 rows/s: wall time to all tasks done;
//                 then (untimed) the shards vacuumed and analyzed, as legacy was after its load
//   4b parity     a full check against bare hash aggregates on legacy, in rounds (median reported)
//   5. CDC        movement 1 keeps streaming: paced probe writes (lag), then a burst (apply rate);
//                 each test waits for the worker's parity passes in flight, and reports any overlap
//   5b busy       the same lag test while the worker also runs a full parity pass of movement 1 and
//                 the throttled backfill of another plan (worker-load.ts): against the quiet figure
//   5c native     native logical replication (its own databases) quiet, then under that same load:
//                 how much the load alone stretches a path with no worker hop (a second baseline)
//   5d cutover    movement 1 still streaming: tenants cut over to their shards by the worker under an
//                 SDK write workload (freeze windows, cutovers/s), some back to legacy, then the
//                 reverse lag (shard → legacy) of probe writes to the tenants the shards now own
//   5e breaker    movement 1 still streaming: N tenants put on their shards by the map, then one trip
//                 of the breaker under SDK writes, for N = 100, 1,000 and all (trip → flip, → end)
//   5f promotion  movement 1 still streaming: a cohort ladder's first step (500 tenants) promoted
//                 under SDK writes through the cohorts service (time, cutovers/s, freeze p50/p99)
//   6. throttled  movement 1 cancelled, movement 2 (shards reset by the service) at a fixed rate
//   7. native     built-in logical replication between the same servers: the same lag and burst tests
//   7b native     the same, shard → legacy: the reverse lag test of 5d
// `--only` picks steps (options.ts: BENCH_STEPS); each brings the steps it needs.
// Every side of a comparison runs with nothing else running; a CHECKPOINT on every server precedes
// each measurement so a checkpoint caused by earlier writes does not land inside it.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { db, disconnectDb } from "@/server/db";
import { loadDemoDataset } from "@/server/demo/dataset";
import { ensureDatabase } from "@/server/embedded/embedded-server";
import { introspectSource, type SourceSchema } from "@/server/engine/analysis/introspect";
import { currentWalLsn, readSlotStatus } from "@/server/engine/cdc/slot";
import { readLoopDelayTrace, readStageTrace } from "@/server/engine/cdc/stage-trace";
import { hashPlacement } from "@/server/engine/router/placement";
import { withClient } from "@/server/engine/sql/connect";
import { spawnWorker } from "@/server/testing/worker-process";
import { addBreakerFigures, runBreakerStep } from "./breaker-step";
import { runChunkLoop, SLICE_CHUNK_ROWS } from "./chunk-loop";
import type { CleanupStack } from "./cleanup";
import {
  type BenchCluster,
  CONTROL_DB,
  checkpointAll,
  dropDatabase,
  LEGACY_DB,
  runSql,
  SHARD_DB,
  startBenchCluster,
  waitForAutovacuumIdle,
} from "./cluster";
import { addCutoverFigures, runCutoverStep, runNativeReverseStep } from "./cutover-step";
import { dropReplicationLeftovers } from "./leftovers";
import {
  attachBenchControlPlane,
  cancelMovement,
  createBenchPlan,
  movementNames,
  runBackfillToCompletion,
  sampleThrottledBackfill,
} from "./movement";
import { startNativeReplication } from "./native";
import type { BenchOptions, BenchStep } from "./options";
import { parityRunsBetween, waitForParityIdle } from "./parity-activity";
import { measureParityRate } from "./parity-rate";
import {
  ARRIVAL_SETUP_SQL,
  burstProbes,
  clearArrivals,
  drivePacedProbes,
  PROBE_TABLE_SQL,
  type ProbeDriveResult,
  readApplyThroughput,
  readLagPerSecond,
  readLags,
  readLagTimeline,
  readTenantIds,
  waitForArrivals,
  warmPool,
} from "./probe";
import { addPromotionFigures, runPromotionStep } from "./promotion-step";
import { prepareRawTargets, runRawCopy } from "./raw-copy";
import { BenchReport, figure } from "./report";
import { addRoutingFigures, measureRoutingOverhead } from "./router-sdk";
import { type LagSummary, pollUntil, rateBetween, summarizeLags } from "./stats";
import { prepareOtherPlan, startWorkerLoad, type WorkerLoad, type WorkerLoadSummary } from "./worker-load";

const RAW_DB = "raw";
/** Step 8's own database on the legacy server: its scratch fence must not meet the plan's fence in LEGACY_DB. */
const ROUTING_DB = "routing_bench";
const PROBE_POOL_SIZE = 16;
const UNTHROTTLED_RATE = 1_000_000;

export interface BenchFacts {
  nproc: number;
  /** 1-minute load average when the bench started and when it ended: other work skews the figures. */
  loadAverage: { start: number; end: number };
  cpuModel: string;
  postgresVersion: string;
  datasetRows: number;
  datasetTables: number;
  datasetTenants: number;
  datasetBytes: number;
  rawSplit: string;
}

export interface BenchResult {
  report: BenchReport;
  facts: BenchFacts;
}

interface BurstMeasurement {
  window: { from: Date; to: Date };
  drive: ProbeDriveResult;
  apply: { rows: number; seconds: number; rowsPerSecond: number };
}

/** One quiet/busy pair of the busy-worker test (5b). */
interface BusyPair extends WorkerLoadSummary {
  quiet: LagSummary;
  lag: LagSummary;
  paced: ProbeDriveResult;
  window: { from: Date; to: Date };
  /** Busy p99 over quiet p99. */
  ratio: number;
  stages: { toRead: LagSummary; toApplied: LagSummary };
}

/** The pair whose ratio is the median (the lower middle one of an even count). */
function medianPair(pairs: readonly BusyPair[]): BusyPair {
  const sorted = [...pairs].sort((a, b) => a.ratio - b.ratio);
  const pick = sorted[Math.floor((sorted.length - 1) / 2)];
  if (!pick) throw new Error("the busy-worker test ran no pair");
  return pick;
}

interface CdcMeasurement {
  lagWindow: { from: Date; to: Date };
  lag: LagSummary;
  paced: ProbeDriveResult;
  /** Null when only the lag test ran (`--only busy`: the quiet figure busy is compared with). */
  burst: BurstMeasurement | null;
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | null = null;
  return () => {
    running ??= fn();
    return running;
  };
}

function pool(url: string, max: number): pg.Pool {
  const p = new pg.Pool({ connectionString: url, max, application_name: "shardshift-bench" });
  p.on("error", () => {});
  return p;
}

/** Per-table row counts on legacy vs the shards: the backfill must have placed every row. */
async function verifyCopy(
  legacy: pg.Pool,
  shards: readonly pg.Pool[],
  schema: SourceSchema,
): Promise<string[]> {
  const problems: string[] = [];
  const count = async (p: pg.Pool, table: string) =>
    Number((await p.query<{ n: string }>(`select count(*) as n from ${table}`)).rows[0]?.n ?? 0);
  for (const table of schema.tables) {
    const expected = await count(legacy, table.qualified);
    const onShards = await Promise.all(shards.map((s) => count(s, table.qualified)));
    const ok =
      table.kind === "reference"
        ? onShards.every((n) => n === expected)
        : onShards.reduce((a, b) => a + b, 0) === expected;
    if (!ok) problems.push(`${table.qualified}: legacy ${expected}, shards ${onShards.join(" + ")}`);
  }
  return problems;
}

async function truncateShardTables(shards: readonly pg.Pool[]): Promise<void> {
  for (const shard of shards) {
    const { rows } = await shard.query<{ name: string }>(
      "select format('%I.%I', schemaname, tablename) as name from pg_tables where schemaname = 'public'",
    );
    if (rows.length) await shard.query(`truncate ${rows.map((r) => r.name).join(", ")}`);
  }
}

async function quiet(cluster: BenchCluster, log: (line: string) => void, what: string): Promise<void> {
  const waited = await waitForAutovacuumIdle(cluster);
  if (waited > 500) log(`    ${what}: waited ${(waited / 1000).toFixed(1)} s for autovacuum to finish`);
}

/** The paced lag test alone: evenly spaced single-row inserts, lag as the targets saw each commit. */
async function measureLag(
  what: string,
  source: pg.Pool,
  targets: readonly pg.Pool[],
  cluster: BenchCluster,
  options: BenchOptions,
  tenantIds: readonly string[],
  log: (line: string) => void,
  settle: () => Promise<void>,
  /** Runs last before the writes start (after the checkpoint): the interference test starts its load here. */
  beforeWrites: () => Promise<void> = async () => {},
): Promise<{ lag: LagSummary; lags: number[]; paced: ProbeDriveResult; window: { from: Date; to: Date } }> {
  await clearArrivals(targets);
  await settle();
  await quiet(cluster, log, what);
  await checkpointAll(cluster);
  await beforeWrites();
  const from = new Date();
  log(`    ${what}: ${options.cdcRate} writes/s for ${options.cdcSeconds} s`);
  const paced = await drivePacedProbes(source, {
    rate: options.cdcRate,
    seconds: options.cdcSeconds,
    tenantIds,
  });
  await waitForArrivals(targets, paced.inserted, what);
  const window = { from, to: new Date() };
  const lags = await readLags(targets);
  const lag = summarizeLags(lags);
  if (options.verbose) {
    const timeline = await readLagTimeline(targets);
    log(`    ${what}: worst lag per 250 ms (ms): ${timeline.map((v) => v.toFixed(0)).join(" ")}`);
    const seconds = await readLagPerSecond(targets);
    log(
      `    ${what}: lag p50/p99 per second (ms): ${seconds.map((v) => `${v.p50.toFixed(1)}/${v.p99.toFixed(0)}`).join(" ")}`,
    );
  }
  log(
    `    ${what}: ${paced.inserted} rows at ${paced.writesPerSecond.toFixed(0)} writes/s; lag p50 ${lag.p50.toFixed(1)} ms, p99 ${lag.p99.toFixed(1)} ms, max ${lag.max.toFixed(1)} ms`,
  );
  await clearArrivals(targets);
  return { lag, lags, paced, window };
}

/** The lag test then the burst test, against whatever replicates source.bench_probe into targets. */
async function measureCdc(
  what: string,
  source: pg.Pool,
  targets: readonly pg.Pool[],
  cluster: BenchCluster,
  options: BenchOptions,
  tenantIds: readonly string[],
  log: (line: string) => void,
  withBurst: boolean,
  /** Runs before each test: lets background work of the system under test finish first. */
  settle: () => Promise<void> = async () => {},
): Promise<CdcMeasurement> {
  await warmPool(source, PROBE_POOL_SIZE);
  // Two seconds at the test's rate first, for ours and native alike: the first rows through a fresh
  // apply path pay for parsing and planning, and our worker's code for its compiling (a worker that
  // applied anything in the last hours is warm; after 20 rows ours' first two seconds ran at lag
  // p50/p99 5.2/32 and 2.7/24 ms, against 1.0–1.6/6–15 ms in every second after them).
  const warm = await drivePacedProbes(source, { rate: options.cdcRate, seconds: 2, tenantIds });
  await waitForArrivals(targets, warm.inserted, `${what} (warm-up)`);
  const {
    lag,
    paced,
    window: lagWindow,
  } = await measureLag(what, source, targets, cluster, options, tenantIds, log, settle);
  if (!withBurst) return { lag, paced, lagWindow, burst: null };

  await settle();
  await quiet(cluster, log, what);
  await checkpointAll(cluster);
  const burstFrom = new Date();
  log(
    `    ${what}: burst of ${options.burstRows} rows (${options.burstBatch} per transaction, ${options.burstConnections} connections)`,
  );
  const burst = await burstProbes(source, {
    rows: options.burstRows,
    batch: options.burstBatch,
    connections: options.burstConnections,
    tenantIds,
  });
  await waitForArrivals(targets, burst.inserted, `${what} (burst)`, 180_000);
  const burstWindow = { from: burstFrom, to: new Date() };
  const apply = await readApplyThroughput(targets);
  log(
    `    ${what}: written at ${burst.writesPerSecond.toFixed(0)} rows/s, applied at ${apply.rowsPerSecond.toFixed(0)} rows/s (${apply.seconds.toFixed(2)} s)`,
  );
  await clearArrivals(targets);
  return { lag, paced, lagWindow, burst: { drive: burst, apply, window: burstWindow } };
}

export async function runBench(
  options: BenchOptions,
  log: (line: string) => void,
  cleanup: CleanupStack,
): Promise<BenchResult> {
  const report = new BenchReport();
  const loadAtStart = os.loadavg()[0] ?? 0;
  const wants = (s: BenchStep) => options.only === null || options.only.has(s);
  const needsWorker = (
    ["backfill", "parity", "cdc", "busy", "throttled", "cutover", "breaker", "promotion"] as const
  ).some(wants);
  const step = async <T>(label: string, fn: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    log(`… ${label}`);
    const result = await fn();
    log(`✓ ${label} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
    return result;
  };

  // 1. servers
  const cluster = await step("1/7 PostgreSQL servers", () =>
    startBenchCluster({
      portBase: options.portBase,
      shards: options.shards,
      log: (l) => log(`    ${l}`),
      serverLog: options.verbose ? (l) => log(`    ${l}`) : undefined,
    }),
  );
  cleanup.push("stop the servers and delete their directory", () => cluster.stop());
  cleanup.push("check that no slot or subscription remains", async () => {
    // Interrupted: the servers are going down with their directory, slots and all.
    if (cleanup.aborted) return;
    await dropReplicationLeftovers(cluster.all, log);
  });
  const postgresVersion =
    (await runSql<{ v: string }>(cluster.legacy.url(), "select current_setting('server_version') as v"))[0]
      ?.v ?? "?";

  const legacyPool = pool(cluster.legacy.url(LEGACY_DB), PROBE_POOL_SIZE);
  const shardPools = cluster.shards.map((s) => pool(s.url(SHARD_DB), 2));
  cleanup.push("close the bench's pools", async () => {
    await Promise.all([legacyPool, ...shardPools].map((p) => p.end().catch(() => {})));
  });

  // 2. dataset
  const dataset = await step(
    `2/7 dataset (${options.rows.toLocaleString("en-US")} rows, ${options.tenants.toLocaleString("en-US")} tenants)`,
    async () => {
      const summary = await loadDemoDataset(legacyPool, {
        rows: options.rows,
        tenants: options.tenants,
        seed: options.seed,
      });
      await legacyPool.query(PROBE_TABLE_SQL);
      // Hint bits and the visibility map set now, not by whichever copier reads the table first.
      await legacyPool.query("vacuum (analyze)");
      const size = await legacyPool.query<{ bytes: string }>(
        "select pg_database_size(current_database())::text as bytes",
      );
      return { ...summary, bytes: Number(size.rows[0]?.bytes ?? 0) };
    },
  );
  const tenantIds = await readTenantIds(legacyPool);
  const schema = await withClient(cluster.legacy.url(LEGACY_DB), (c) => introspectSource(c, "tenant_id"));
  const placement = hashPlacement(cluster.shards.length);

  // 3. baselines for the backfill: the raw COPY pipe, then (a diagnostic) the bare chunk loop
  const baselines = !wants("backfill")
    ? null
    : await step("3/7 baseline: raw COPY pipe into indexed tables; bare chunk loop", async () => {
        for (const shard of cluster.shards) await runSql(shard.url(), `create database ${RAW_DB}`);
        const rawUrls = cluster.shards.map((s) => s.url(RAW_DB));
        await prepareRawTargets(rawUrls, schema);
        await checkpointAll(cluster);
        const rawWalFrom = await currentWalLsn(legacyPool);
        const copied = await runRawCopy({
          sourceUrl: cluster.legacy.url(LEGACY_DB),
          targetUrls: rawUrls,
          schema,
          placement,
          tenantIds,
        });
        const rawWal = Number((await currentWalLsn(legacyPool)) - rawWalFrom);
        log(
          `    raw COPY: ${copied.rows.toLocaleString("en-US")} rows in ${(copied.ms / 1000).toFixed(2)} s = ${copied.rowsPerSecond.toFixed(0)} rows/s`,
        );
        const rawPools = rawUrls.map((url) => pool(url, 1));
        try {
          await truncateShardTables(rawPools);
        } finally {
          await Promise.all(rawPools.map((p) => p.end()));
        }
        await checkpointAll(cluster);
        const loopWalFrom = await currentWalLsn(legacyPool);
        const loop = await runChunkLoop({
          sourceUrl: cluster.legacy.url(LEGACY_DB),
          targetUrls: rawUrls,
          schema,
          placement,
          lanes: 2,
          chunkRows: SLICE_CHUNK_ROWS,
        });
        const loopWal = Number((await currentWalLsn(legacyPool)) - loopWalFrom);
        log(
          `    chunk loop: ${loop.rows.toLocaleString("en-US")} rows in ${(loop.ms / 1000).toFixed(2)} s = ${loop.rowsPerSecond.toFixed(0)} rows/s (${loop.chunks} chunks)`,
        );
        for (const shard of cluster.shards) await dropDatabase(shard, RAW_DB);
        return { raw: { ...copied, walBytes: rawWal }, chunkLoop: { ...loop, walBytes: loopWal } };
      });

  const workerSteps = async () => {
    // 4. backfill, unthrottled, through the real worker
    const controlUrl = cluster.control.url(CONTROL_DB);
    await attachBenchControlPlane(controlUrl);
    cleanup.push("disconnect from the control plane", () => disconnectDb());
    const planId = await createBenchPlan(
      cluster.legacy.url(LEGACY_DB),
      cluster.shards.map((s) => s.url(SHARD_DB)),
    );
    // Its own process, as `npm run worker` runs in production: the bench's probe writer (the
    // "application") does not share an event loop with the engine.
    // The worker's CDC writes per-transaction stage timestamps here (stage-trace.ts).
    const tracePath = path.join(os.tmpdir(), `shardshift-cdc-trace-${process.pid}.txt`);
    process.env.SHARDSHIFT_CDC_TRACE = tracePath;
    cleanup.push("delete the CDC stage trace", async () => {
      fs.rmSync(tracePath, { force: true });
      fs.rmSync(`${tracePath}.loop`, { force: true });
    });
    const stagesOf = (what: string, window: { from: Date; to: Date }) => {
      const stages = readStageTrace(tracePath, window.from.getTime(), window.to.getTime());
      const toRead = summarizeLags(stages.toRead);
      const toApplied = summarizeLags(stages.toApplied);
      log(
        `    ${what}: stages (ms, p50 / p99 / max): source commit → in our worker ${toRead.p50.toFixed(2)} / ${toRead.p99.toFixed(2)} / ${toRead.max.toFixed(1)}; ` +
          `→ apply returned ${toApplied.p50.toFixed(2)} / ${toApplied.p99.toFixed(2)} / ${toApplied.max.toFixed(1)}`,
      );
      const threads = readLoopDelayTrace(tracePath, window.from.getTime(), window.to.getTime());
      for (const [lane, loop] of threads) {
        log(
          `    ${what}: the ${lane} CDC thread: event-loop delay worst second's p99 ${loop.p99.toFixed(1)} ms, max ${loop.max.toFixed(1)} ms; ` +
            `per second ${loop.onCpuMsPerS.toFixed(0)} ms on a core, ${loop.waitingMsPerS.toFixed(0)} ms waiting for one`,
        );
      }
      return { toRead, toApplied };
    };
    // The bench trips the breaker itself and puts tenants on shards by map changes that leave stray
    // writes behind: a rule tripping on its own would roll a round's tenants back before its click.
    process.env.SHARDSHIFT_AUTO_TRIP ??= "off";
    // A diagnostic: node flags for the worker only (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof";
    // NODE_OPTIONS refuses --cpu-prof, and would profile the bench process too).
    const nodeOptions = process.env.BENCH_WORKER_NODE_ARGS?.split(" ").filter(Boolean);
    const worker = spawnWorker({
      nodeOptions,
      onLine: options.verbose ? (l) => log(`    [worker] ${l}`) : undefined,
    });
    const stopWorker = once(() => worker.kill("SIGTERM"));
    await worker.ready;
    cleanup.push("stop the worker", stopWorker);
    cleanup.push("cancel a movement still running", async () => {
      if (cleanup.aborted) return; // the slot goes with its server
      const movement = await db().dataMovement.findUnique({ where: { planId } });
      if (movement && movement.status !== "cancelled") await cancelMovement(planId, "bench: clean-up");
    });

    await checkpointAll(cluster);
    const backfill = await step("4/7 backfill through the worker, unthrottled", async () => {
      const walFrom = await currentWalLsn(legacyPool);
      const run = await runBackfillToCompletion(planId, UNTHROTTLED_RATE, 600_000);
      const walBytes = Number((await currentWalLsn(legacyPool)) - walFrom);
      log(
        `    ${run.rows.toLocaleString("en-US")} rows in ${(run.ms / 1000).toFixed(2)} s = ${((run.rows * 1000) / run.ms).toFixed(0)} rows/s` +
          ` (startDataMovement ${(run.startCallMs / 1000).toFixed(2)} s, first rows after ${((run.firstRowsMs ?? 0) / 1000).toFixed(2)} s)`,
      );
      const problems = await verifyCopy(legacyPool, shardPools, schema);
      for (const p of problems) log(`    warning: row counts differ after the backfill: ${p}`);
      if (problems.length) report.note(`Row counts differed after the backfill: ${problems.join("; ")}`);
      // The backfill has just bulk-loaded the shards' tables. Their first vacuum (hint bits, the
      // visibility map and, with data checksums on, a full-page image of every page: ~77 MB of WAL
      // per shard here) is autovacuum's to run whenever its naptime comes round — in session 6's
      // runs inside the measured parity pass (0.56–0.63 of the bare aggregate, against 0.88–0.99 for
      // the same pass right after). Legacy was vacuumed after its load (step 2); the shards are now,
      // outside the timed backfill, so every later step reads both sides in the same state.
      const vacuumStarted = performance.now();
      await Promise.all(shardPools.map((shard) => shard.query("vacuum (analyze)")));
      log(
        `    shards vacuumed and analyzed after the backfill in ${((performance.now() - vacuumStarted) / 1000).toFixed(1)} s`,
      );
      return { ...run, walBytes };
    });

    // 4b. parity: a full check of the copied data against a bare hash aggregate on legacy
    const parity = !wants("parity")
      ? null
      : await step("4b parity: full check vs a bare in-database hash aggregate", async () => {
          // The worker starts its own parity passes once the backfill is done: measure on a quiet system.
          const inFlight = await waitForParityIdle(controlUrl, planId, {
            appearMs: 3_000,
            timeoutMs: 120_000,
          });
          if (inFlight.runs > 0) {
            log(
              `    waited ${(inFlight.waitedMs / 1000).toFixed(1)} s for the worker's parity passes (${inFlight.runs})`,
            );
          }
          // The shards were vacuumed at the end of step 4, so no autovacuum of the bulk-loaded
          // tables lands inside the pass; the WAL it writes is reported as a check (0 expected).
          await waitForAutovacuumIdle(cluster);
          await checkpointAll(cluster);
          // Rounds, each the full check then its baselines right after it: a burst of other work on
          // this shared machine hits one round, and the round with the median ratio is reported.
          const rounds: Awaited<ReturnType<typeof measureParityRate>>[] = [];
          for (let round = 1; round <= options.parityRounds; round++) {
            const r = await measureParityRate(legacyPool, shardPools, placement, schema);
            rounds.push(r);
            if (options.parityRounds > 1) {
              log(
                `    round ${round}: full check ${r.rowsPerSecond.toFixed(0)} rows/s, bare aggregate ${r.bare.rowsPerSecond.toFixed(0)} rows/s: ${(r.rowsPerSecond / r.bare.rowsPerSecond).toFixed(2)} (load ${os.loadavg()[0]?.toFixed(1)})`,
              );
            }
          }
          const byRatio = [...rounds].sort(
            (a, b) => a.rowsPerSecond / a.bare.rowsPerSecond - b.rowsPerSecond / b.bare.rowsPerSecond,
          );
          const rate = byRatio[Math.floor((byRatio.length - 1) / 2)] as (typeof rounds)[number];
          log(
            `    full check: ${rate.rowsVerified.toLocaleString("en-US")} rows verified in ${(rate.ms / 1000).toFixed(2)} s = ${rate.rowsPerSecond.toFixed(0)} rows/s` +
              ` (${rate.mismatchedChunks} mismatched chunks); bare aggregate on legacy: ${rate.bare.rowsPerSecond.toFixed(0)} rows/s;` +
              ` same hash on legacy: ${rate.sameHash.rowsPerSecond.toFixed(0)} rows/s; on legacy and shards at once: ${rate.floor.rowsPerSecond.toFixed(0)} rows/s`,
          );
          const mbText = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
          const first = rounds[0] ?? rate;
          log(
            `    WAL written by the full check (first round): legacy ${mbText(first.walBytes.legacy)} MB, shards ${first.walBytes.shards.map(mbText).join(" + ")} MB`,
          );
          return { ...rate, firstRoundWalBytes: first.walBytes };
        });

    // 5. CDC through our movement: backfill done, nothing else writing
    const ours = !(wants("cdc") || wants("busy"))
      ? null
      : await step(
          `5/7 CDC through our movement: lag${wants("cdc") ? " and apply throughput" : " (a warm-up for busy)"}`,
          async () => {
            for (const shard of shardPools) await shard.query(ARRIVAL_SETUP_SQL);
            const { slotName } = await movementNames(planId);
            await pollUntil(
              "our CDC stream to be attached to its slot",
              async () => (await readSlotStatus(legacyPool, slotName))?.active,
              {
                timeoutMs: 30_000,
                intervalMs: 200,
              },
            );
            const settle = async () => {
              const parity = await waitForParityIdle(controlUrl, planId, {
                appearMs: 5_000,
                timeoutMs: 60_000,
              });
              if (parity.runs > 0) {
                log(
                  `    waited ${(parity.waitedMs / 1000).toFixed(1)} s for parity passes in flight (${parity.runs} so far)`,
                );
              }
            };
            const measured = await measureCdc(
              "ours",
              legacyPool,
              shardPools,
              cluster,
              options,
              tenantIds,
              log,
              wants("cdc"),
              settle,
            );
            for (const [test, window] of [
              ["lag test", measured.lagWindow],
              ["burst", measured.burst?.window ?? null],
            ] as const) {
              if (!window) continue;
              const overlapping = await parityRunsBetween(controlUrl, planId, window.from, window.to);
              if (overlapping.length) {
                log(`    parity passes during our ${test}: ${overlapping.join(", ")}`);
                report.note(
                  `The worker's parity passes overlapped our CDC ${test}: ${overlapping.join(", ")}.`,
                );
              }
            }
            return { ...measured, stages: stagesOf("ours", measured.lagWindow) };
          },
        );

    // 5b. CDC lag on a busy worker: the same lag test while the worker also runs full parity passes
    //     of this plan and the throttled backfill of another plan (worker-load.ts)
    const busy = !wants("busy")
      ? null
      : await step(
          "5b CDC lag with a full parity pass and another plan's backfill on the same worker",
          async () => {
            const backfillRate = Math.max(1_000, Math.round(options.throttle / 2));
            const otherPlanId = await prepareOtherPlan(cluster, {
              rows: backfillRate * (options.cdcSeconds + 20),
              tenants: 1_000,
              seed: options.seed + 1,
            });
            cleanup.push("cancel the other plan's movement", async () => {
              if (cleanup.aborted) return;
              const movement = await db().dataMovement.findUnique({ where: { planId: otherPlanId } });
              if (movement && !["cancelled", "failed"].includes(movement.status)) {
                await cancelMovement(otherPlanId, "bench: clean-up");
              }
            });
            const settle = async () => {
              await waitForParityIdle(controlUrl, planId, { appearMs: 0, timeoutMs: 60_000 });
            };
            // Quiet and busy alternate, pairs apart: a drift of the machine over the minutes lands on
            // both sides of a pair, and the pair with the median ratio is the one reported.
            const pairs: BusyPair[] = [];
            const quietLags: number[] = [];
            const busyLags: number[] = [];
            for (let pair = 1; pair <= options.busyPairs; pair++) {
              const of = options.busyPairs > 1 ? ` (pair ${pair}/${options.busyPairs})` : "";
              const quietRun = await measureLag(
                `ours, quiet worker${of}`,
                legacyPool,
                shardPools,
                cluster,
                options,
                tenantIds,
                log,
                settle,
              );
              let load: WorkerLoad | null = null;
              const measured = await measureLag(
                `ours, busy worker${of}`,
                legacyPool,
                shardPools,
                cluster,
                options,
                tenantIds,
                log,
                settle,
                async () => {
                  load = await startWorkerLoad({
                    controlUrl,
                    measuredPlanId: planId,
                    otherPlanId,
                    backfillRate,
                    load: options.busyLoad,
                    again: pair > 1,
                  });
                },
              );
              const summary = await (load as WorkerLoad | null)?.stop();
              if (!summary) throw new Error("the worker load did not start");
              log(
                `    busy worker${of}: ${summary.parityPasses} full parity pass(es) (${summary.paritySeconds.map((v) => `${v.toFixed(1)} s`).join(", ")}), ${summary.backfillRows.toLocaleString("en-US")} rows backfilled for the other plan at ${backfillRate} rows/s; ${summary.parityMismatched} table(s) with tenants that differed at the pass's scan` +
                  `${summary.backfillDoneEarly ? " (its backfill finished before the test ended)" : ""}`,
              );
              const ratio = measured.lag.p99 / quietRun.lag.p99;
              log(
                `    pair ${pair}: lag p99 ${quietRun.lag.p99.toFixed(1)} ms quiet → ${measured.lag.p99.toFixed(1)} ms busy, ${ratio.toFixed(2)}×`,
              );
              if (summary.backfillDoneEarly) {
                report.note(
                  `The other plan's backfill finished before the busy-worker lag test of pair ${pair} ended.`,
                );
              }
              quietLags.push(...quietRun.lags);
              busyLags.push(...measured.lags);
              pairs.push({
                quiet: quietRun.lag,
                lag: measured.lag,
                paced: measured.paced,
                window: measured.window,
                ...summary,
                ratio,
                stages: stagesOf(`ours, busy worker${of}`, measured.window),
              });
            }
            if (options.busyLoad !== "both") {
              report.note(
                `--busy-load ${options.busyLoad}: the busy-worker figures had only the ${options.busyLoad === "parity" ? "full parity pass" : "other plan's backfill"} beside CDC, not both.`,
              );
            }
            const median = medianPair(pairs);
            // The figure: every quiet probe against every busy one (a p99 over 30 s moves with any
            // one hiccup of a second; over the pairs' 90 s much less).
            const pooled = { quiet: summarizeLags(quietLags), busy: summarizeLags(busyLags) };
            if (pairs.length > 1) {
              log(
                `    busy-worker ratios (p99 busy / quiet): ${pairs.map((p) => p.ratio.toFixed(2)).join(", ")}; median ${median.ratio.toFixed(2)}×; ` +
                  `all pairs' probes together ${pooled.quiet.p99.toFixed(1)} → ${pooled.busy.p99.toFixed(1)} ms, ${(pooled.busy.p99 / pooled.quiet.p99).toFixed(2)}×`,
              );
            }
            return { ...median, pairs, pooled, backfillRate, otherPlanId };
          },
        );

    // 5c. the same two lag tests on native logical replication (its own databases, native.ts) while
    //     this worker stays up with our movement streaming but idle: quiet, then under the same load
    //     as 5b. How much the load alone (two cores shared by the databases' hashing and copying)
    //     stretches a replication path that has no worker hop, next to what it does to ours.
    const nativeBusy = !busy
      ? null
      : await step(
          "5c baseline: native logical replication's lag, quiet and under the same load",
          async () => {
            const replication = await startNativeReplication({
              legacy: cluster.legacy,
              shards: cluster.shards,
              password: cluster.password,
              sourcePoolSize: PROBE_POOL_SIZE,
            });
            const stop = once(() => replication.stop());
            cleanup.push("drop the native subscriptions (5c)", stop);
            try {
              const { source, targets } = replication;
              await warmPool(source, PROBE_POOL_SIZE);
              await burstProbes(source, { rows: 20, batch: 1, connections: 4, tenantIds });
              await waitForArrivals(targets, 20, "native (warm-up)");
              const settle = async () => {
                await waitForParityIdle(controlUrl, planId, { appearMs: 0, timeoutMs: 60_000 });
              };
              const quietRun = await measureLag(
                "native, quiet",
                source,
                targets,
                cluster,
                options,
                tenantIds,
                log,
                settle,
              );
              let load: WorkerLoad | null = null;
              const busyRun = await measureLag(
                "native, busy worker",
                source,
                targets,
                cluster,
                options,
                tenantIds,
                log,
                settle,
                async () => {
                  load = await startWorkerLoad({
                    controlUrl,
                    measuredPlanId: planId,
                    otherPlanId: busy.otherPlanId,
                    backfillRate: busy.backfillRate,
                    load: options.busyLoad,
                    again: true,
                  });
                },
              );
              const summary = await (load as WorkerLoad | null)?.stop();
              if (!summary) throw new Error("the worker load did not start");
              log(
                `    native, busy worker: ${summary.parityPasses} full parity pass(es) (${summary.paritySeconds.map((v) => `${v.toFixed(1)} s`).join(", ")}), ${summary.backfillRows.toLocaleString("en-US")} rows backfilled for the other plan; ${summary.parityMismatched} table(s) with tenants that differed at the pass's scan`,
              );
              return { quiet: quietRun.lag, busy: busyRun.lag, paced: busyRun.paced, ...summary };
            } finally {
              await stop();
            }
          },
        );

    // 5d. cutover: tenants to their shards and some back under SDK writes, then the reverse lag
    //     (cutover-step.ts); tenants stay on the shards until step 6 cancels the movement
    const cutover = !wants("cutover")
      ? null
      : await step(
          `5d cutover: ${options.cutoverTenants} tenants to their shards under SDK writes, ${options.cutoverBack} back; reverse lag`,
          () =>
            runCutoverStep({
              planId,
              cluster,
              legacyPool,
              tenantIds,
              options,
              log,
              report,
              logStages: (what, window) => {
                stagesOf(what, window);
              },
              prepareMeasurement: async () => {
                await waitForParityIdle(controlUrl, planId, { appearMs: 0, timeoutMs: 60_000 });
                await quiet(cluster, log, "ours, shard → legacy");
                await checkpointAll(cluster);
              },
            }),
        );

    // 5e. breaker: N tenants on their shards by the map, then one trip under SDK writes, for
    //     N = 100, 1,000 and all (breaker-step.ts); every tenant ends on legacy again
    const breaker = !wants("breaker")
      ? null
      : await step("5e breaker: trip → every tenant back on legacy, under SDK writes", async () => {
          await waitForParityIdle(controlUrl, planId, { appearMs: 0, timeoutMs: 60_000 });
          return runBreakerStep({
            planId,
            cluster,
            tenantIds,
            options,
            log,
            verifyRows: () => verifyCopy(legacyPool, shardPools, schema),
            // Each round starts on a settled cluster, as the lag tests do: no autovacuum of the
            // bulk-loaded tables and no checkpoint of earlier writes inside the trip.
            settle: async () => {
              await quiet(cluster, log, "breaker round");
              await checkpointAll(cluster);
            },
          });
        });

    // 5f. promotion: a cohort of --promotion-tenants promoted under SDK writes (promotion-step.ts)
    const promotion = !wants("promotion")
      ? null
      : await step(
          `5f promotion: a cohort of ${options.promotionTenants} tenants promoted under SDK writes`,
          async () => {
            await waitForParityIdle(controlUrl, planId, { appearMs: 0, timeoutMs: 60_000 });
            return runPromotionStep({ planId, cluster, options, log });
          },
        );

    // 6. backfill, throttled: a second movement on emptied shards
    const throttled = !wants("throttled")
      ? null
      : await step(`6/7 backfill through the worker, throttled at ${options.throttle} rows/s`, async () => {
          await cancelMovement(planId, "bench: next measurement");
          await checkpointAll(cluster);
          let nextTrace = 0;
          const run = await sampleThrottledBackfill(
            planId,
            options.throttle,
            options.throttleToS + 0.5,
            (atMs, tasks) => {
              if (!options.verbose || atMs < nextTrace) return;
              nextTrace += 1_000;
              const active = tasks
                .filter((t) => t.status === "running")
                .map((t) => `${t.table} ${t.rowsCopied}`);
              log(`    t=${(atMs / 1000).toFixed(2)} s running: ${active.join(", ") || "none"}`);
            },
          );
          await cancelMovement(planId, "bench: measurements done");
          const window = rateBetween(run.samples, options.throttleFromS * 1000, options.throttleToS * 1000);
          if (!window) {
            throw new Error(
              `The throttled backfill gave no samples between ${options.throttleFromS} s and ${options.throttleToS} s` +
                `${run.finishedEarly ? " (it finished before that: raise --rows or lower --throttle)" : ""}.`,
            );
          }
          if (run.finishedEarly) {
            report.note(
              `The throttled backfill finished within the measuring window; the rate is over ${((window.toMs - window.fromMs) / 1000).toFixed(1)} s only.`,
            );
          }
          log(
            `    ${window.rowsPerSecond.toFixed(0)} rows/s between ${(window.fromMs / 1000).toFixed(2)} s and ${(window.toMs / 1000).toFixed(2)} s`,
          );
          return window;
        });
    if (!throttled) await cancelMovement(planId, "bench: measurements done");
    await stopWorker();
    await disconnectDb();
    return { backfill, parity, ours, busy, nativeBusy, throttled, cutover, breaker, promotion };
  };
  const engine = needsWorker ? await workerSteps() : null;

  // 7. native logical replication, same servers, nothing of ours running
  const native = !wants("cdc")
    ? null
    : await step("7/7 baseline: native logical replication, same tests", async () => {
        const replication = await startNativeReplication({
          legacy: cluster.legacy,
          shards: cluster.shards,
          password: cluster.password,
          sourcePoolSize: PROBE_POOL_SIZE,
        });
        const stop = once(() => replication.stop());
        cleanup.push("drop the native subscriptions", stop);
        try {
          return await measureCdc(
            "native",
            replication.source,
            replication.targets,
            cluster,
            options,
            tenantIds,
            log,
            true,
          );
        } finally {
          await stop();
        }
      });

  // 7b. native logical replication shard → legacy: the reverse lag test of 5d, for the same tenants
  const cutover = engine?.cutover ?? null;
  const nativeReverse = !cutover?.reverse
    ? null
    : await step("7b baseline: native logical replication shard → legacy, the reverse lag test", () =>
        runNativeReverseStep({
          cluster,
          shardTenants: cutover.shardTenants,
          options,
          log,
          cleanup,
          prepareMeasurement: async () => {
            await quiet(cluster, log, "native, shard → legacy");
            await checkpointAll(cluster);
          },
        }),
      );

  // 8. issue 12's per-query costs (server/bench/router-sdk.ts), nothing else running
  const routing = !wants("routing")
    ? null
    : await step("8 router SDK and fence overhead on legacy", async () => {
        await ensureDatabase(cluster.legacy.url(), ROUTING_DB);
        const p = pool(cluster.legacy.url(ROUTING_DB), 2);
        try {
          return await measureRoutingOverhead(p, log);
        } finally {
          await p.end();
        }
      });

  // Figures
  const rawSplit = `split by tenant over ${cluster.shards.length} shards with the movement's placement, shards in parallel, tables in sequence`;
  const {
    backfill = null,
    parity = null,
    ours = null,
    busy = null,
    nativeBusy = null,
    throttled = null,
  } = engine ?? {};
  const { raw = null, chunkLoop = null } = baselines ?? {};
  if (backfill && raw && chunkLoop) {
    const backfillRate = (backfill.rows * 1000) / backfill.ms;
    report.add({
      figure: figure("backfill.unthrottled.rows_per_s", backfillRate, "rows/s", raw.rowsPerSecond),
      label: "backfill, unthrottled (worker)",
      baselineLabel: "raw COPY pipe",
      aim: { text: "ratio ≥ 0.6", check: (f) => (f.ratio ?? 0) >= 0.6 },
    });
  }
  if (parity) {
    report.add({
      figure: figure(
        "parity.full_check.rows_per_s",
        parity.rowsPerSecond,
        "rows/s",
        parity.bare.rowsPerSecond,
      ),
      label: `parity, full check (legacy + every shard hashed, compared per tenant; median of ${options.parityRounds} round${options.parityRounds === 1 ? "" : "s"})`,
      baselineLabel: "bare hash aggregate on legacy",
      aim: { text: "ratio ≥ 0.8", check: (f) => (f.ratio ?? 0) >= 0.8 },
    });
    report.add({
      figure: figure(
        "parity.full_check.vs_same_hash",
        parity.rowsPerSecond,
        "rows/s",
        parity.sameHash.rowsPerSecond,
      ),
      label: "parity, full check, against its own row hash summed on legacy alone",
      baselineLabel: "same hash, legacy alone",
    });
    report.add({
      figure: figure(
        "parity.full_check.vs_floor",
        parity.rowsPerSecond,
        "rows/s",
        parity.floor.rowsPerSecond,
      ),
      label: "parity, full check, against the same hash on legacy and shards at once (the floor here)",
      baselineLabel: "same hash, all servers at once",
    });
    report.add({
      figure: figure(
        "parity.full_check.wal_mb",
        (parity.firstRoundWalBytes.legacy + parity.firstRoundWalBytes.shards.reduce((a, b) => a + b, 0)) /
          1024 /
          1024,
        "MB",
      ),
      label:
        "WAL written by the first round's full check on legacy and the shards (hint bits set by a first read)",
    });
  }
  if (backfill && raw && chunkLoop) {
    report.add({
      figure: figure("backfill.raw_copy.rows_per_s", raw.rowsPerSecond, "rows/s"),
      label: "raw COPY pipe (baseline)",
    });
    report.add({
      figure: figure("backfill.chunk_loop.rows_per_s", chunkLoop.rowsPerSecond, "rows/s", raw.rowsPerSecond),
      label: `bare chunk loop (copyChunk × 2 lanes, ${SLICE_CHUNK_ROWS}-row chunks, no worker)`,
      baselineLabel: "raw COPY pipe",
    });
    report.add({
      figure: figure("backfill.unthrottled.seconds", backfill.ms / 1000, "s", raw.ms / 1000),
      label: "backfill wall time (start → all tasks done)",
      baselineLabel: "raw COPY",
    });
    report.add({
      figure: figure("backfill.unthrottled.start_call_seconds", backfill.startCallMs / 1000, "s"),
      label: "backfill start-up: the startDataMovement call",
    });
    report.add({
      figure: figure(
        "backfill.unthrottled.first_rows_seconds",
        (backfill.firstRowsMs ?? Number.NaN) / 1000,
        "s",
      ),
      label: "backfill start-up: start → first rows copied",
    });
    const mb = (bytes: number) => bytes / 1024 / 1024;
    report.add({
      figure: figure("backfill.unthrottled.legacy_wal_mb", mb(backfill.walBytes), "MB", mb(raw.walBytes)),
      label: "WAL written on legacy during the backfill",
      baselineLabel: "raw COPY",
    });
    report.add({
      figure: figure("backfill.chunk_loop.legacy_wal_mb", mb(chunkLoop.walBytes), "MB", mb(raw.walBytes)),
      label: "WAL written on legacy during the bare chunk loop",
      baselineLabel: "raw COPY",
    });
  }
  if (throttled) {
    report.add({
      figure: figure("backfill.throttled.rows_per_s", throttled.rowsPerSecond, "rows/s", options.throttle),
      label: `backfill, throttled (${options.throttleFromS}–${options.throttleToS} s)`,
      baselineLabel: "rate set",
      aim: { text: "ratio 0.9–1.1", check: (f) => Math.abs((f.ratio ?? 0) - 1) <= 0.1 },
    });
  }
  const lagRows = [
    ["p50", "p50"],
    ["p99", "p99"],
    ["max", "max"],
  ] as const;
  if (ours && native) {
    for (const [key, label] of lagRows) {
      report.add({
        figure: figure(`cdc.lag.${key}_ms`, ours.lag[key], "ms", native.lag[key]),
        label: `CDC lag ${label} at ${options.cdcRate} writes/s (ours)`,
        baselineLabel: "native",
        aim:
          key === "p99"
            ? { text: "ratio ≤ 2", check: (f) => (f.ratio ?? Number.POSITIVE_INFINITY) <= 2 }
            : undefined,
      });
    }
  }
  if (busy) {
    const ofPairs =
      busy.pairs.length > 1
        ? ` (${busy.pairs.length} interleaved quiet/busy pairs of ${options.cdcSeconds} s, all their probes)`
        : "";
    for (const [key, label] of lagRows) {
      report.add({
        figure: figure(`cdc.busy_worker.lag.${key}_ms`, busy.pooled.busy[key], "ms", busy.pooled.quiet[key]),
        label: `CDC lag ${label} at ${options.cdcRate} writes/s, worker also running a full parity pass and another plan's backfill${ofPairs}`,
        baselineLabel: "quiet worker, same pairs",
        aim:
          key === "p99"
            ? { text: "ratio ≤ 1.5", check: (f) => (f.ratio ?? Number.POSITIVE_INFINITY) <= 1.5 }
            : undefined,
      });
    }
    report.add({
      figure: figure(
        "cdc.busy_worker.lag.write_rate",
        busy.paced.writesPerSecond,
        "writes/s",
        options.cdcRate,
      ),
      label: `busy-worker lag test: writes achieved (${busy.parityPasses} full parity pass of ${busy.paritySeconds.map((v) => v.toFixed(1)).join(" + ")} s, ${busy.backfillRows} rows of the other plan's backfill at ${busy.backfillRate} rows/s meanwhile)`,
      baselineLabel: "target",
    });
    if (busy.pairs.length > 1) {
      report.add({
        figure: figure("cdc.busy_worker.median_pair.lag.p99_ms", busy.lag.p99, "ms", busy.quiet.p99),
        label: `CDC lag p99, busy worker: the pair with the median ratio of ${busy.pairs.length}`,
        baselineLabel: "quiet worker, same pair",
      });
      busy.pairs.forEach((pair, i) => {
        report.add({
          figure: figure(`cdc.busy_worker.pair_${i + 1}.lag.p99_ms`, pair.lag.p99, "ms", pair.quiet.p99),
          label: `CDC lag p99, busy worker, pair ${i + 1} of ${busy.pairs.length}`,
          baselineLabel: "quiet worker, same pair",
        });
      });
    }
  }
  if (nativeBusy) {
    for (const [key, label] of lagRows) {
      report.add({
        figure: figure(
          `cdc.busy_worker.native.lag.${key}_ms`,
          nativeBusy.busy[key],
          "ms",
          nativeBusy.quiet[key],
        ),
        label: `native replication's lag ${label} under the same load as the busy worker's`,
        baselineLabel: "native, quiet, same step",
      });
    }
    if (busy) {
      report.add({
        figure: figure(
          "cdc.busy_worker.lag.vs_native_p99_ms",
          busy.pooled.busy.p99,
          "ms",
          nativeBusy.busy.p99,
        ),
        label: "CDC lag p99, busy worker (ours), against native's p99 under the same load",
        baselineLabel: "native, same load",
      });
    }
    report.add({
      figure: figure(
        "cdc.busy_worker.native.lag.write_rate",
        nativeBusy.paced.writesPerSecond,
        "writes/s",
        options.cdcRate,
      ),
      label: `native under the busy worker's load: writes achieved (${nativeBusy.parityPasses} full parity pass of ${nativeBusy.paritySeconds.map((v) => v.toFixed(1)).join(" + ")} s, ${nativeBusy.backfillRows} rows of the other plan's backfill)`,
      baselineLabel: "target",
    });
  }
  const stageRuns = [
    ["quiet", ours?.stages ?? null],
    ["busy_worker", busy?.stages ?? null],
  ] as const;
  for (const [name, run] of stageRuns) {
    if (!run) continue;
    for (const [stage, label, summary] of [
      ["commit_to_worker", "legacy commit → change in our worker", run.toRead],
      ["worker_to_applied", "change in our worker → apply returned", run.toApplied],
    ] as const) {
      for (const key of ["p50", "p99"] as const) {
        report.add({
          figure: figure(`cdc.stage.${name}.${stage}.${key}_ms`, summary[key], "ms"),
          label: `CDC stage ${key}, ${label} (${name === "quiet" ? "quiet worker" : "busy worker"})`,
        });
      }
    }
  }
  if (native) {
    for (const [key, label] of lagRows) {
      report.add({
        figure: figure(`cdc.native.lag.${key}_ms`, native.lag[key], "ms"),
        label: `CDC lag ${label} at ${options.cdcRate} writes/s (native)`,
      });
    }
  }
  if (ours) {
    report.add({
      figure: figure("cdc.lag.write_rate", ours.paced.writesPerSecond, "writes/s", options.cdcRate),
      label: "lag test: writes achieved (ours)",
      baselineLabel: "target",
    });
  }
  if (ours?.burst && native?.burst) {
    report.add({
      figure: figure("cdc.native.lag.write_rate", native.paced.writesPerSecond, "writes/s", options.cdcRate),
      label: "lag test: writes achieved (native)",
      baselineLabel: "target",
    });
    report.add({
      figure: figure(
        "cdc.apply.rows_per_s",
        ours.burst.apply.rowsPerSecond,
        "rows/s",
        native.burst.apply.rowsPerSecond,
      ),
      label: `CDC apply throughput, ${options.burstRows} row burst (ours)`,
      baselineLabel: "native",
    });
    report.add({
      figure: figure("cdc.native.apply.rows_per_s", native.burst.apply.rowsPerSecond, "rows/s"),
      label: "CDC apply throughput (native)",
    });
    report.add({
      figure: figure("cdc.burst.write_rows_per_s", ours.burst.drive.writesPerSecond, "rows/s"),
      label: "burst write rate on legacy (ours run)",
    });
    report.add({
      figure: figure("cdc.native.burst.write_rows_per_s", native.burst.drive.writesPerSecond, "rows/s"),
      label: "burst write rate on legacy (native run)",
    });
  }

  if (cutover) addCutoverFigures(report, options, cutover, nativeReverse);
  if (engine?.breaker) addBreakerFigures(report, options, engine.breaker);
  if (engine?.promotion) addPromotionFigures(report, options, engine.promotion);
  if (routing) addRoutingFigures(report, routing);

  if (backfill) {
    report.note(
      `Backfill tables done at (s after start): ${backfill.tables
        .map(
          (t) =>
            `${t.table.replace(/^"public"\./, "").replaceAll('"', "")} ${(t.doneAtMs / 1000).toFixed(1)} (${t.rows})`,
        )
        .join(", ")}`,
    );
  }
  if (raw) {
    report.note(
      `Raw COPY per table (s): ${raw.perTable
        .map(
          (t) =>
            `${t.table.replace(/^"public"\./, "").replaceAll('"', "")} ${(t.ms / 1000).toFixed(2)} (${t.rows})`,
        )
        .join(", ")}`,
    );
  }
  return {
    report,
    facts: {
      nproc: os.availableParallelism(),
      loadAverage: { start: loadAtStart, end: os.loadavg()[0] ?? 0 },
      cpuModel: os.cpus()[0]?.model ?? "?",
      postgresVersion,
      datasetRows: dataset.totalRows,
      datasetTables: dataset.tables.length,
      datasetTenants: dataset.tenants,
      datasetBytes: dataset.bytes,
      rawSplit,
    },
  };
}
