// The worker also runs parity checks once a plan's backfill is done (a full pass, then "recent"
// passes). They hash tables on legacy and the shards, which competes with CDC for the same two
// cores. The CDC tests start only after the passes in flight have finished (so the full pass right
// after the backfill does not land inside a measurement), and any pass that overlapped a
// measurement is reported next to the figures: it is part of the product's steady state.
//
// Read with plain SQL, and only if the control plane has the table, so the bench does not depend
// on the parity feature's shape.
import { runSql } from "./cluster";
import { sleep } from "./stats";

async function hasParityRuns(controlUrl: string): Promise<boolean> {
  const rows = await runSql<{ present: boolean }>(
    controlUrl,
    "select to_regclass('public.parity_run') is not null as present",
  );
  return rows[0]?.present ?? false;
}

/** Waits (≤ appearMs) for the first pass to be scheduled, then (≤ timeoutMs) until none is running. */
export async function waitForParityIdle(
  controlUrl: string,
  planId: string,
  options: { appearMs: number; timeoutMs: number },
): Promise<{ runs: number; waitedMs: number }> {
  if (!(await hasParityRuns(controlUrl))) return { runs: 0, waitedMs: 0 };
  const started = performance.now();
  for (;;) {
    const rows = await runSql<{ runs: number; running: number }>(
      controlUrl,
      `select count(*)::int as runs, count(*) filter (where status = 'running')::int as running
         from parity_run where plan_id = $1::uuid`,
      [planId],
    );
    const { runs = 0, running = 0 } = rows[0] ?? {};
    const waited = performance.now() - started;
    if ((runs > 0 || waited > options.appearMs) && running === 0) return { runs, waitedMs: waited };
    if (waited > options.timeoutMs) return { runs, waitedMs: waited }; // measure anyway; the overlap is reported
    await sleep(200);
  }
}

/** Parity passes that ran at some point between `from` and `to`, e.g. "recent 0.8 s". */
export async function parityRunsBetween(
  controlUrl: string,
  planId: string,
  from: Date,
  to: Date,
): Promise<string[]> {
  if (!(await hasParityRuns(controlUrl))) return [];
  const rows = await runSql<{ kind: string; seconds: number | null }>(
    controlUrl,
    `select kind, extract(epoch from coalesce(finished_at, now()) - started_at)::float8 as seconds
       from parity_run
      where plan_id = $1::uuid and started_at < $3 and coalesce(finished_at, now()) > $2
      order by started_at`,
    [planId, from, to],
  );
  return rows.map((r) => `${r.kind} ${r.seconds === null ? "?" : r.seconds.toFixed(1)} s`);
}
