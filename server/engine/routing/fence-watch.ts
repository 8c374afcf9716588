// Every worker runs this loop (worker.ts): once a second, for each plan whose fences are installed,
// bring every database's fence up to the routing map (a change whose push failed — a shard was
// down — lands here at the latest) and record the stray writes the fences refused. Several workers
// may run it at once: a per-plan try-lock on the control plane lets one do each plan's round.
import { db } from "../store/db";
import { collectStrayWrites, loadPlanFences, syncPlanFences } from "./plan-fences";

/**
 * The per-plan lock a watch round takes (try-lock, transaction-level). A breaker rollback holds it
 * on its own session from before its freeze to its end (run-rollback.ts): it fences the set itself,
 * and a round syncing the same 2,000 routes at the same time made its fence change queue behind the
 * round's tenant locks, doubling the fence step.
 */
export const FENCE_WATCH_LOCK = 7_363_700;

export interface FenceWatch {
  stop(): Promise<void>;
}

export async function fenceRound(planId: string, log: (m: string) => void): Promise<void> {
  await db().$transaction(
    async (tx) => {
      const [lock] = await tx.$queryRaw<{ ok: boolean }[]>`
        select pg_try_advisory_xact_lock(${FENCE_WATCH_LOCK}, hashtext(${planId})) as ok`;
      if (!lock?.ok) return;
      const fences = await loadPlanFences(planId);
      for (const outcome of await syncPlanFences(fences)) {
        if (outcome.error) log(`[fence] ${outcome.database}: ${outcome.error}`);
      }
      await collectStrayWrites(fences);
    },
    { timeout: 30_000, maxWait: 10_000 },
  );
}

export function startFenceWatch(
  options: { intervalMs?: number; log?: (m: string) => void } = {},
): FenceWatch {
  const log = options.log ?? ((m: string) => console.log(m));
  let stopped = false;
  let round: Promise<void> = Promise.resolve();
  const tick = async () => {
    const plans = await db().routingMap.findMany({
      where: { fenceInstalledAt: { not: null } },
      select: { planId: true },
    });
    for (const { planId } of plans) {
      if (stopped) return;
      await fenceRound(planId, log).catch((e) => log(`[fence] plan ${planId}: ${(e as Error).message}`));
    }
  };
  const timer = setInterval(() => {
    round = round.then(() =>
      stopped ? undefined : tick().catch((e) => log(`[fence] ${(e as Error).message}`)),
    );
  }, options.intervalMs ?? 1_000);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await round;
    },
  };
}
