// One job of a kind per plan at a time, whichever worker got it: a session advisory lock on the
// control plane, held on a connection of its own for the job's whole run. pg-boss alone does not
// promise that (a job that outlives its expiry is started again beside itself), and a killed
// worker's lock goes with its connection, so the next attempt can take over.
import pg from "pg";

/**
 * Advisory lock classes on the control plane (the CDC runner's is 7_363_200, in forward-cdc.ts).
 * `start` is held by a movement's start from before its claim to its end: a `preparing` movement
 * whose lock is free was left by a start whose process died (interrupted-start.ts).
 */
export const PLAN_JOB_LOCKS = { parity: 7_363_300, census: 7_363_400, start: 7_363_600 } as const;

/** Runs `job` if no other holder has the plan's lock of this kind; returns null when it did not run. */
export async function runExclusivePerPlan<T>(
  connectionString: string,
  kind: keyof typeof PLAN_JOB_LOCKS,
  planId: string,
  job: () => Promise<T>,
): Promise<T | null> {
  const lock = new pg.Client({ connectionString, application_name: `shardshift-${kind}-lock` });
  lock.on("error", () => {});
  await lock.connect();
  try {
    const { rows } = await lock.query<{ ok: boolean }>(
      "select pg_try_advisory_lock($1, hashtext($2)) as ok",
      [PLAN_JOB_LOCKS[kind], planId],
    );
    return rows[0]?.ok ? await job() : null;
  } finally {
    await lock.end().catch(() => {});
  }
}
