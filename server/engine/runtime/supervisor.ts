// Each worker process runs one supervisor. Every second it derives what should be running from
// the store (Vitess-style: state from stored rows, not from memory) and makes it so:
//   - running movements: enqueue one backfill slice per unfinished task (the queue's `short`
//     policy collapses duplicates; the task's advisory lock keeps copiers exclusive), and the
//     tenant census until it is done;
//   - running or paused movements: try to run the plan's CDC stream here (an advisory lock makes
//     exactly one worker win; the others try again next tick, so a killed stream is taken over);
//   - cancelling movements: drop the slot and publication, mark the movement cancelled.
// Any number of workers may run this loop at once.
import type PgBoss from "pg-boss";
import { db } from "../../db";
import { type BackfillSliceJob, type ParityCheckJob, QUEUES, type TenantCensusJob } from "../../jobs/queue";
import { finishCancel } from "../../services/movement/movement";
import { type CdcRunner, startCdcRunner } from "../cdc/cdc-runner";

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

export interface Supervisor {
  /** Runs a tick now (after the one in progress), e.g. when an operator just started a movement. */
  poke(): void;
  stop(): Promise<void>;
}

export function startSupervisor(
  boss: PgBoss,
  options: {
    intervalMs?: number;
    log?: (m: string) => void;
    /** Called after slices were queued, so this process's consumers can fetch them now. */
    onSlicesQueued?: () => void;
  } = {},
): Supervisor {
  const log = options.log ?? ((m) => console.log(m));
  const runners = new Map<string, CdcRunner>();
  let stopped = false;
  let ticking: Promise<void> = Promise.resolve();

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
        await finishCancel(m.planId).catch((e) =>
          log(`[supervisor] cancel of ${m.planId} failed: ${(e as Error).message}`),
        );
        continue;
      }
      wanted.add(m.planId);
      if (!runners.has(m.planId)) runners.set(m.planId, startCdcRunner(m.planId, { log }));
      if (m.status === "running" && !m.censusAt) {
        const job: TenantCensusJob = { planId: m.planId };
        await boss.send(QUEUES.tenantCensus, job, { singletonKey: `census-${m.planId}` });
      }
      if (m.status === "running") {
        const tasks = await db().backfillTask.findMany({
          where: { planId: m.planId, status: { in: ["pending", "running"] } },
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
      }
    }
  }

  const runTick = () => {
    ticking = ticking.then(() =>
      stopped ? undefined : tick().catch((e) => log(`[supervisor] ${(e as Error).message}`)),
    );
  };
  const timer = setInterval(runTick, options.intervalMs ?? 1_000);

  return {
    poke: runTick,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await ticking;
      await Promise.all([...runners.values()].map((r) => r.stop()));
      runners.clear();
    },
  };
}
