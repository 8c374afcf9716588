// Every worker runs this loop (worker.ts): once a second, for each plan whose fences are installed,
// bring every database's fence up to the routing map (a change whose push failed — a shard was
// down — lands here at the latest) and record the stray writes the fences refused. Several workers
// may run it at once: a per-plan try-lock on the control plane lets one do each plan's round. A round
// leaves the fences alone while a cutover or a rollback of the plan is in flight (FENCE_SYNC_LOCK).
import type pg from "pg";
import { db } from "../store/db";
import { collectStrayWrites, loadPlanFences, syncPlanFences } from "./plan-fences";

const FENCE_WATCH_LOCK = 7_363_700;

/**
 * The plan's fence-sync lock: a watch round syncs the plan's fences only when it gets it
 * exclusively (try-lock); every cutover and breaker rollback in flight holds it SHARED on its own
 * session (holdFenceSync). They change the fences of their tenants themselves; a round syncing the
 * same routes at the same time took the same tenants' fence locks in the same order, so the mover's
 * fence change queued behind the round's waits for other tenants' writes in flight (a breaker's
 * fence step doubled; a cutover's freeze waited on tenants not its own). Stray writes are collected
 * on every round regardless. What the round would have brought a fence that a mover left behind
 * (a database that was down) it brings on the first round after the movers are done: a stale fence
 * refuses more, never less (only an owner accepts writes, and owners change only through movers).
 */
export const FENCE_SYNC_LOCK = 7_363_701;

/** How long a mover waits for a watch round in progress before it goes on without the lock. */
export const FENCE_SYNC_WAIT_MS = 2_000;

/**
 * Takes the plan's fence-sync lock shared on `session` (held until released or the session ends).
 * Returns false when a round held it longer than FENCE_SYNC_WAIT_MS: the mover goes on without it —
 * slower, never wrong (both sides take the tenants' fence locks in one order).
 */
export async function holdFenceSync(session: pg.ClientBase, planId: string): Promise<boolean> {
  const deadline = Date.now() + FENCE_SYNC_WAIT_MS;
  for (;;) {
    const { rows } = await session.query<{ ok: boolean }>(
      "select pg_try_advisory_lock_shared($1, hashtext($2)) as ok",
      [FENCE_SYNC_LOCK, planId],
    );
    if (rows[0]?.ok) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Gives back what holdFenceSync took (a no-op when it was not held). */
export async function releaseFenceSync(session: pg.ClientBase, planId: string): Promise<void> {
  await session
    .query("select pg_advisory_unlock_shared($1, hashtext($2))", [FENCE_SYNC_LOCK, planId])
    .catch(() => {});
}

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
      const [sync] = await tx.$queryRaw<{ ok: boolean }[]>`
        select pg_try_advisory_xact_lock(${FENCE_SYNC_LOCK}, hashtext(${planId})) as ok`;
      if (sync?.ok) {
        for (const outcome of await syncPlanFences(fences)) {
          if (outcome.error) log(`[fence] ${outcome.database}: ${outcome.error}`);
        }
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
