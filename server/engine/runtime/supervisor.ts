// Each worker process runs one supervisor. Every second it derives what should be running from
// the store (Vitess-style: state from stored rows, not from memory) and makes it so:
//   - running movements: enqueue one backfill slice per unfinished task (the queue's `short`
//     policy collapses duplicates; the task's advisory lock keeps copiers exclusive), and the
//     tenant census until it is done;
//   - running or paused movements: try to run the plan's CDC stream here, in the process's CDC
//     thread (isolated-runner.ts: its own event loop) (an advisory lock makes
//     exactly one worker win; the others try again next tick, so a killed stream is taken over);
//   - cancelling movements: drop the slot and publication, mark the movement cancelled.
// Beside the tick, not in it, the slot watch (slot-watch.ts) samples the WAL every movement's slot
// retains and recovers starts whose process died before they recorded their slot.
// Any number of workers may run this loop at once.
import type PgBoss from "pg-boss";
import { type BackfillSliceJob, type ParityCheckJob, QUEUES, type TenantCensusJob } from "../../jobs/queue";
import { startBreakerScheduler } from "../breaker/breaker-scheduler";
import type { BreakerAuditWriter } from "../breaker/run-rollback";
import type { CdcRunner } from "../cdc/cdc-runner";
import { FailureStreak } from "../cdc/failure-streak";
import { startIsolatedCdcRunner, stopCdcThread } from "../cdc/isolated-runner";
import { dropSlotOrigins } from "../cdc/target-applier";
import { startCutoverScheduler, workerName } from "../cutover/cutover-scheduler";
import { dropReverseReplication, startReverseStreams } from "../cutover/reverse-streams";
import type { RoutingAuditDraft } from "../routing/atomic-change";
import type { RoutingAuditWriter } from "../routing/routing-map";
import { db } from "../store/db";
import { failMovement, loadMovementContext } from "../store/movement-context";
import { finishCancel } from "./finish-cancel";
import { startSlotWatch } from "./slot-watch";

/** Continuous parity once the backfill is done: a full pass every 10 min, a "recent" pass every 30 s. */
const FULL_PARITY_EVERY_MS = 10 * 60_000;
const RECENT_PARITY_EVERY_MS = 30_000;

async function scheduleParity(boss: PgBoss, planId: string) {
  const lastOf = (kind: string) =>
    db().parityRun.findFirst({
      where: { planId, kind },
      orderBy: { startedAt: "desc" },
      select: { startedAt: true },
    });
  const [full, recent] = [await lastOf("full"), await lastOf("recent")];
  const now = Date.now();
  const job = (kind: "full" | "recent"): ParityCheckJob => ({ planId, kind });
  if (!full || now - full.startedAt.getTime() > FULL_PARITY_EVERY_MS) {
    await boss.send(QUEUES.parityCheck, job("full"), { singletonKey: `parity-${planId}` });
  } else if (!recent || now - recent.startedAt.getTime() > RECENT_PARITY_EVERY_MS) {
    await boss.send(QUEUES.parityCheck, job("recent"), { singletonKey: `parity-${planId}` });
  }
}

/** SQLSTATE of "could not drop replication origin …, in use by PID …". */
const OBJECT_IN_USE = "55006";

/** A cancelled movement's replication origins on its shards (one server may hold several shards). */
async function dropApplyOrigins(planId: string) {
  const ctx = await loadMovementContext(planId);
  for (const shard of ctx.shards) await dropSlotOrigins(shard, ctx.slotName);
}

export interface Supervisor {
  /** Runs a tick now (after the one in progress), e.g. when an operator just started a movement. */
  poke(): void;
  /**
   * Looks for breaker trips now, without waiting for the tick in progress and the movements,
   * slices, streams and cutovers a tick goes through first: a trip's pick-up is on the path from
   * the click to the last tenant back on legacy (under load a tick took ~0.5 s before it got there).
   */
  pokeBreaker(): void;
  stop(): Promise<void>;
}

export function startSupervisor(
  boss: PgBoss,
  controlPlaneUrl: string,
  options: {
    intervalMs?: number;
    log?: (m: string) => void;
    /** Called after slices were queued, so this process's consumers can fetch them now. */
    onSlicesQueued?: () => void;
    /** Audits the routing-map changes cutovers make (a system actor's writer, from the process). */
    routingAudit: RoutingAuditWriter;
    /** The same events drafted for the cutover's one-statement map changes (atomic-change.ts). */
    routingAuditDraft?: RoutingAuditDraft;
    /** Cutover attempts driven at once by this worker. */
    maxCutovers?: number;
    /** Audits the breaker's rollback outcomes (a system actor's writer, from the process). */
    breakerAudit: BreakerAuditWriter;
  },
): Supervisor {
  const log = options.log ?? ((m) => console.log(m));
  const runners = new Map<string, CdcRunner>();
  let stopped = false;
  let ticking: Promise<void> = Promise.resolve();
  const streaks = new Map<string, FailureStreak>();
  const slotWatch = startSlotWatch(controlPlaneUrl, { log });
  // Tenant cutovers: requested ones claimed, those of dead workers taken over (recoveryFor).
  const cutovers = startCutoverScheduler({
    controlPlaneUrl,
    audit: options.routingAudit,
    auditDraft: options.routingAuditDraft,
    log,
    maxConcurrent: options.maxCutovers,
  });
  // Breaker trips: rollbacks of a set of tenants to legacy, taken over after a dead worker.
  const breaker = startBreakerScheduler({
    controlPlaneUrl,
    audit: options.routingAudit,
    breakerAudit: options.breakerAudit,
    auditDraft: options.routingAuditDraft,
    log,
    worker: workerName(),
  });
  // Reverse replication (shard → legacy) of every shard that owns, or was given, a tenant.
  const reverse = startReverseStreams({ controlPlaneUrl, log });

  /** A stream failing the same way over and over fails its movement (failure-streak.ts). */
  async function judgeRunner(planId: string, runner: CdcRunner) {
    let streak = streaks.get(planId);
    if (!streak) {
      streak = new FailureStreak();
      streaks.set(planId, streak);
    }
    if (runner.progressed) streak.reset();
    if (!runner.failure || !streak.failed(runner.failure)) return;
    const seconds = Math.round((Date.now() - streak.firstAt) / 1000);
    const cause = runner.failure instanceof Error ? runner.failure.message : String(runner.failure);
    const failed = await failMovement(
      planId,
      "cdc",
      `CDC into the shards failed ${streak.attempts} times in a row over ${seconds} s, the same way each time: ${cause}. ` +
        "It was stopped rather than retried behind “running” (legacy keeps the WAL it still needs meanwhile). " +
        "Fix the cause on the shard or legacy, then resume the data movement.",
    );
    if (failed) streaks.delete(planId);
  }

  async function tick() {
    const movements = await db().dataMovement.findMany({
      where: { status: { in: ["running", "paused", "cancelling"] } },
      select: { planId: true, status: true, censusAt: true },
    });
    const wanted = new Set<string>();
    for (const m of movements) {
      if (m.status === "cancelling") {
        await runners.get(m.planId)?.stop();
        runners.delete(m.planId);
        await reverse.stopPlan(m.planId);
        // An origin still held by another worker's apply session (its stream stops at its own next
        // tick, as this one's just did) cannot be dropped yet: the cancel waits for a later tick
        // rather than finish with the origins left on the shards for ever (a server allows only
        // max_active_replication_origins of them). Any other failure (a shard unreachable) is logged
        // and the cancel goes on: nothing later would do better.
        const originsHeld = await dropApplyOrigins(m.planId)
          .then(() => dropReverseReplication(m.planId))
          .then(
            () => false,
            (e) => {
              const inUse = (e as { code?: string }).code === OBJECT_IN_USE;
              log(
                `[supervisor] dropping the apply origins of ${m.planId} failed${inUse ? " (another worker's stream still holds them; retried next tick)" : ""}: ${(e as Error).message}`,
              );
              return inUse;
            },
          );
        if (originsHeld) continue;
        await finishCancel(m.planId).catch((e) =>
          log(`[supervisor] cancel of ${m.planId} failed: ${(e as Error).message}`),
        );
        continue;
      }
      wanted.add(m.planId);
      if (!runners.has(m.planId)) runners.set(m.planId, startIsolatedCdcRunner(m.planId, { log }));
      if (m.status === "running" && !m.censusAt) {
        const job: TenantCensusJob = { planId: m.planId };
        await boss.send(QUEUES.tenantCensus, job, { singletonKey: `census-${m.planId}` });
      }
      if (m.status === "running") {
        // Largest first: the last table copied then is a small one, not a lane copying alone.
        const tasks = await db().backfillTask.findMany({
          where: { planId: m.planId, status: { in: ["pending", "running"] } },
          orderBy: [{ rowsTotal: "desc" }, { id: "asc" }],
          select: { id: true },
        });
        let queued = 0;
        for (const t of tasks) {
          const data: BackfillSliceJob = { taskId: t.id.toString() };
          if (await boss.send(QUEUES.backfillSlice, data, { singletonKey: `task-${t.id}` })) queued++;
        }
        if (queued) options.onSlicesQueued?.();
        if (tasks.length === 0) await scheduleParity(boss, m.planId);
      }
    }
    // Runners whose movement ended (cancelled, failed) or that lost their lock stop and are forgotten.
    for (const [planId, runner] of runners) {
      if (!wanted.has(planId) || runner.finished) {
        await runner.stop();
        runners.delete(planId);
        await judgeRunner(planId, runner);
      }
    }
    for (const planId of streaks.keys()) if (!wanted.has(planId)) streaks.delete(planId);
    await reverse
      .tick([...wanted])
      .catch((e) => log(`[supervisor] reverse streams: ${(e as Error).message}`));
    await cutovers.tick();
    await breaker.tick().catch((e) => log(`[supervisor] breaker: ${(e as Error).message}`));
  }

  const runTick = () => {
    ticking = ticking.then(() =>
      stopped ? undefined : tick().catch((e) => log(`[supervisor] ${(e as Error).message}`)),
    );
  };
  const timer = setInterval(runTick, options.intervalMs ?? 1_000);

  let breakerTicking: Promise<void> = Promise.resolve();
  const runBreakerTick = () => {
    breakerTicking = breakerTicking.then(() =>
      stopped ? undefined : breaker.tick().catch((e) => log(`[supervisor] breaker: ${(e as Error).message}`)),
    );
  };

  return {
    poke: runTick,
    pokeBreaker: runBreakerTick,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await slotWatch.stop();
      await ticking;
      await breakerTicking;
      await cutovers.stop();
      await breaker.stop();
      await reverse.stop();
      await Promise.all([...runners.values()].map((r) => r.stop()));
      runners.clear();
      await stopCdcThread();
    },
  };
}
