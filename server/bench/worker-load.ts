// The interference test's load: while CDC's lag is measured, the same worker process also runs
//   - a full parity pass of the measured plan (requested as the test starts; it hashes every row
//     on legacy and the shards, ~1–5 s here),
//   - and the backfill of another plan (its own legacy database on the legacy server, its own
//     databases on the shard servers), throttled so that it copies throughout the test.
// Both are the worker's ordinary work, started the way an operator starts them (a parity job on
// the queue; setBackfillRate and startDataMovement); CDC runs in its own thread (isolated-runner.ts),
// and this measures whether that keeps its lag where it is on a quiet worker.
import pg from "pg";
import { loadDemoDataset } from "@/server/demo/dataset";
import { ensureDatabase } from "@/server/embedded/embedded-server";
import { type ParityCheckJob, QUEUES, startQueue } from "@/server/jobs/queue";
import { type BenchCluster, runSql } from "./cluster";
import { backfillProgress, cancelMovement, createOtherBenchPlan, startThrottledBackfill } from "./movement";
import type { BusyLoad } from "./options";
import { sleep } from "./stats";

export const OTHER_LEGACY_DB = "monolith_b";
export const OTHER_SHARD_DB = "app_b";

export interface WorkerLoadSummary {
  /** Full parity passes of the measured plan that ran during the load (finished or not), and their seconds. */
  parityPasses: number;
  paritySeconds: number[];
  /**
   * Tables in which some tenant's hashes differed in those passes (parity_run.chunks_mismatched).
   * In the busy test of our CDC the probe table is written to during the pass, so its tenants differ
   * by the replication lag and go through verification (re-hashes that wait for our CDC); in
   * native's test the probes go to native's own databases, and nothing differs.
   */
  parityMismatched: number;
  /** Rows the other plan's backfill copied while the load ran. */
  backfillRows: number;
  /** The other plan's backfill finished before the load ended (it did not cover the whole test). */
  backfillDoneEarly: boolean;
}

export interface WorkerLoad {
  stop(): Promise<WorkerLoadSummary>;
}

/** Loads the other plan's dataset (`rows` rows) on a database of its own. Returns its plan id. */
export async function prepareOtherPlan(
  cluster: BenchCluster,
  options: { rows: number; tenants: number; seed: number },
): Promise<string> {
  await ensureDatabase(cluster.legacy.url(), OTHER_LEGACY_DB);
  const legacyUrl = cluster.legacy.url(OTHER_LEGACY_DB);
  const pool = new pg.Pool({ connectionString: legacyUrl, max: 4 });
  try {
    await loadDemoDataset(pool, options);
    await pool.query("vacuum (analyze)");
  } finally {
    await pool.end();
  }
  for (const shard of cluster.shards) await ensureDatabase(shard.url(), OTHER_SHARD_DB);
  return createOtherBenchPlan(
    "bench-other",
    legacyUrl,
    cluster.shards.map((s) => s.url(OTHER_SHARD_DB)),
  );
}

export async function startWorkerLoad(options: {
  controlUrl: string;
  measuredPlanId: string;
  otherPlanId: string;
  backfillRate: number;
  /** The other plan's movement ran before (an earlier load): its shards are emptied first. */
  again?: boolean;
  /** Run only one of the two (a diagnostic: which of them stretches the lag). Default both. */
  load?: BusyLoad;
}): Promise<WorkerLoad> {
  const { controlUrl, measuredPlanId, otherPlanId } = options;
  const startedAt = new Date();
  const parts = options.load ?? "both";
  if (parts !== "parity")
    await startThrottledBackfill(otherPlanId, options.backfillRate, options.again ?? false);
  const boss = await startQueue(controlUrl, { supervise: false });
  const job: ParityCheckJob = { planId: measuredPlanId, kind: "full" };
  if (parts !== "backfill")
    await boss.send(QUEUES.parityCheck, job, { singletonKey: `parity-${measuredPlanId}` });
  // The pass takes a moment to start: the test begins once it runs.
  for (let waited = 0; parts !== "backfill" && waited < 30_000; waited += 200) {
    const rows = await runSql<{ n: number }>(
      controlUrl,
      "select count(*)::int as n from parity_run where plan_id = $1::uuid and kind = 'full' and started_at >= $2",
      [measuredPlanId, startedAt],
    );
    if ((rows[0]?.n ?? 0) > 0) break;
    await sleep(200);
  }
  const rowsAtStart = (await backfillProgress(otherPlanId)).rows;
  return {
    async stop() {
      const progress = await backfillProgress(otherPlanId);
      const passes = await runSql<{ seconds: number; mismatched: number }>(
        controlUrl,
        `select extract(epoch from coalesce(finished_at, now()) - started_at)::float8 as seconds,
                chunks_mismatched as mismatched
           from parity_run where plan_id = $1::uuid and kind = 'full' and started_at >= $2 order by started_at`,
        [measuredPlanId, startedAt],
      );
      await boss.stop({ graceful: false });
      if (parts !== "parity") await cancelMovement(otherPlanId, "bench: interference test done");
      return {
        parityPasses: passes.length,
        paritySeconds: passes.map((p) => p.seconds),
        parityMismatched: passes.reduce((sum, p) => sum + p.mismatched, 0),
        backfillRows: progress.rows - rowsAtStart,
        backfillDoneEarly: progress.done,
      };
    },
  };
}
