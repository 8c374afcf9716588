// A parity run's liveness. A run is a row that says "running" until its worker records the end;
// a worker killed mid-pass (SIGKILL, OOM, a lost machine) never does, and the page would show a
// check running for ever while none is. So a running check writes a heartbeat every few seconds,
// and a running row whose heartbeat is older than ABANDONED_AFTER_SECONDS is marked failed — by the
// next pass of the plan, and whenever the plan's parity status is read. Plain SQL, each statement
// its own transaction: nothing here holds an interactive transaction open while engine work runs.
import { db } from "./db";

export const HEARTBEAT_EVERY_MS = 5_000;
/** Twelve missed heartbeats: a stalled event loop is not a dead worker. */
export const ABANDONED_AFTER_SECONDS = 60;

/** Starts writing the run's heartbeat; stop() ends it (before the run's last write). */
export function startRunHeartbeat(runId: bigint): { stop(): Promise<void> } {
  let beating: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    beating = db()
      .$executeRawUnsafe(
        "update parity_run set heartbeat_at = now() where id = $1::bigint and status = 'running'",
        runId.toString(),
      )
      .catch(() => {});
  }, HEARTBEAT_EVERY_MS);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await beating;
    },
  };
}

/**
 * Marks failed every running check (of one plan, or of all) whose heartbeat stopped, with the
 * reason; returns the plans whose runs it failed.
 */
export async function failAbandonedRuns(planId?: string): Promise<string[]> {
  const rows = await db().$queryRawUnsafe<{ plan_id: string }[]>(
    `update parity_run
        set status = 'failed', finished_at = now(),
            error = 'The worker running this check stopped (no heartbeat since ' ||
                    to_char(heartbeat_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS') ||
                    ' UTC). Its results were not recorded; the next check runs by itself, or start one now.'
      where status = 'running' and heartbeat_at < now() - make_interval(secs => $1::int)
        and ($2::uuid is null or plan_id = $2::uuid)
      returning plan_id::text`,
    ABANDONED_AFTER_SECONDS,
    planId ?? null,
  );
  return [...new Set(rows.map((r) => r.plan_id))];
}
