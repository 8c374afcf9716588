// The engine process (`npm run worker`). It works durable jobs from the queue on the control-plane
// database and runs the supervisor that keeps each plan's backfill slices queued and its CDC
// stream running; start as many as you like, on any machine that reaches the control plane and the
// databases. `npm run demo` runs one in-process. SIGINT/SIGTERM stop it cleanly: the current chunk
// or CDC batch finishes, unconfirmed work is redone by the next worker.

import { pathToFileURL } from "node:url";
import type PgBoss from "pg-boss";
import { resumeVacuums, runBackfillSlice, stopVacuums } from "./engine/backfill/run-slice";
import { runTenantCensus } from "./engine/backfill/tenant-census";
import { ruleActorEmail, startAutoTrip } from "./engine/breaker/auto-trip";
import { warmCdcThreads } from "./engine/cdc/isolated-runner";
import { startShardWatch } from "./engine/gates/shard-watch";
import { runParityCheck } from "./engine/parity/run-check";
import { startFenceWatch } from "./engine/routing/fence-watch";
import { runExclusivePerPlan } from "./engine/runtime/plan-lock";
import { type Supervisor, startSupervisor } from "./engine/runtime/supervisor";
import { listenForWakeups } from "./engine/runtime/wake";
import { closeEnginePools } from "./engine/sql/pools";
import { serverEnv } from "./env";
import { startAuditDigests } from "./jobs/audit-digest-job";
import {
  type BackfillSliceJob,
  type ParityCheckJob,
  QUEUES,
  startQueue,
  type TenantCensusJob,
} from "./jobs/queue";
import { systemActor } from "./services/actor";
import { auditBreakerEventsAs, auditTripAs } from "./services/breaker/breaker";
import { startPromotionWatch } from "./services/cohorts/promotion-runner";
import { auditRoutingChangesAs, draftRoutingAuditAs } from "./services/routing/routing";
import { migrateControlPlane } from "./store/migrate";

/** How long a stopping worker lets its copied tables' vacuums run before cancelling them. */
const VACUUMS_STOP_GRACE_MS = 5_000;

export interface Worker {
  boss: PgBoss;
  stop(): Promise<void>;
}

export async function startWorker(
  connectionString: string,
  options: {
    log?: (m: string) => void;
    /** Trip the breaker by itself when a rule fires. Default: on, unless SHARDSHIFT_AUTO_TRIP=off. */
    autoTrip?: boolean;
    /**
     * Load the CDC threads before returning (warmCdcThreads), not on first use: what a worker that
     * serves movements does (its entry point, the demo). Tests leave it off: most never stream back.
     */
    warmCdcThreads?: boolean;
  } = {},
): Promise<Worker> {
  const log = options.log ?? ((m: string) => console.log(m));
  resumeVacuums(); // a worker stopped earlier in this process stopped them
  const warming = options.warmCdcThreads ? warmCdcThreads({ log }) : null;
  warming?.catch(() => {}); // awaited below; a start that fails before then must not leave it unhandled
  const boss = await startQueue(connectionString);
  await boss.work(QUEUES.heartbeat, async () => {});
  // Two slices at a time per worker: copying is I/O bound, and two cores serve two copiers well.
  const sliceWorkers: string[] = [];
  for (let i = 0; i < 2; i++) {
    const id = await boss.work<BackfillSliceJob>(
      QUEUES.backfillSlice,
      { pollingIntervalSeconds: 0.5 },
      async ([job]) => {
        if (job) await runBackfillSlice(BigInt(job.data.taskId));
      },
    );
    sliceWorkers.push(id);
  }
  await boss.work<ParityCheckJob>(QUEUES.parityCheck, { pollingIntervalSeconds: 0.5 }, async ([job]) => {
    if (job) {
      const { planId, kind } = job.data;
      await runExclusivePerPlan(connectionString, "parity", planId, () => runParityCheck(planId, kind));
    }
  });
  await boss.work<TenantCensusJob>(QUEUES.tenantCensus, { pollingIntervalSeconds: 1 }, async ([job]) => {
    if (job) {
      const { planId } = job.data;
      await runExclusivePerPlan(connectionString, "census", planId, () => runTenantCensus(planId));
    }
  });
  await startAuditDigests(boss, log);
  const supervisor: Supervisor = startSupervisor(boss, connectionString, {
    log,
    onSlicesQueued: () => {
      for (const id of sliceWorkers) boss.notifyWorker(id);
    },
    // The engine's map changes (cutovers) are audited as the system, like an operator's are as them.
    routingAudit: auditRoutingChangesAs(systemActor(`worker-${process.pid}`, "engine@shardshift")),
    breakerAudit: auditBreakerEventsAs(systemActor(`worker-${process.pid}`, "engine@shardshift")),
    routingAuditDraft: draftRoutingAuditAs(systemActor(`worker-${process.pid}`, "engine@shardshift")),
  });
  // Fences follow the routing map and their refusals are recorded as stray writes (every second).
  const fenceWatch = startFenceWatch({ log });
  // Shards are probed every few seconds: the breaker's "shard unreachable" rule judges the history.
  const shardWatch = startShardWatch({ log });
  // The breaker trips by itself when a trip rule fires (as the rule, in the audit log).
  // SHARDSHIFT_AUTO_TRIP=off leaves tripping to people (a test of something else, a drill).
  const autoTrip =
    (options.autoTrip ?? process.env.SHARDSHIFT_AUTO_TRIP !== "off") === false
      ? null
      : startAutoTrip({
          log,
          auditAs: (ruleId) =>
            auditTripAs(systemActor(`rule-${ruleId}-${process.pid}`, ruleActorEmail(ruleId))),
        });
  // Cohort promotions: each driven by one worker, taken over from the store if that worker dies.
  const promotions = startPromotionWatch({ controlPlaneUrl: connectionString, log });
  // A movement started or resumed, a promotion asked for, a trip: act now rather than at the next tick.
  const wake = await listenForWakeups(connectionString, () => {
    // The breaker first and on its own: a trip must not queue behind a whole tick.
    supervisor.pokeBreaker();
    supervisor.poke();
    promotions.poke();
  });
  const stop = async () => {
    await wake.stop();
    await promotions.stop();
    await fenceWatch.stop();
    await shardWatch.stop();
    await autoTrip?.stop();
    await supervisor.stop();
    await boss.stop({ graceful: true, timeout: 10_000 });
    // On the engine's pools, closed next; bounded: a vacuum may wait for a lock on a shard for ever.
    await stopVacuums(VACUUMS_STOP_GRACE_MS);
    await closeEnginePools();
  };
  try {
    await warming;
  } catch (error) {
    // A CDC thread that cannot load its code cannot replicate: stop what started, and say why.
    await stop().catch(() => {});
    throw new Error(`The worker's CDC threads did not start: ${(error as Error).message}`);
  }
  return { boss, stop };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const url = serverEnv().DATABASE_URL;
  await migrateControlPlane(url);
  const worker = await startWorker(url, { warmCdcThreads: true });
  console.log(`Shardshift worker ${process.pid} is running. Ctrl-C stops it.`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await worker.stop();
    process.exit(0);
  };
  process.once("SIGINT", () => void stop());
  process.once("SIGTERM", () => void stop());
}
