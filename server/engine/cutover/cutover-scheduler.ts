// Which cutover attempts this worker drives: every supervisor tick, the in-flight attempts no live
// worker holds (their lock is free: 'requested' ones, and those whose worker died) are started
// here, oldest first, at most `maxConcurrent` at a time. Several workers may run this at once: an
// attempt's advisory lock (run-cutover.ts) lets exactly one drive it; the others skip it.
import os from "node:os";
import { createGate } from "../shared/gate";
import { db } from "../store/db";
import { CUTOVER_LOCK_CLASS, type CutoverRun, type CutoverRunOptions, startCutoverRun } from "./run-cutover";

const IN_FLIGHT = ["requested", "prechecking", "fencing", "draining", "flipped", "aborting"];

export interface CutoverScheduler {
  tick(): Promise<void>;
  /** Attempts this worker drives now. */
  running(): number;
  stop(): Promise<void>;
}

export function workerName(): string {
  return `${os.hostname()}:${process.pid}`;
}

/**
 * Attempts of one worker inside their freeze at once. The eight attempts run their pre-checks side
 * by side, but their freezes queue on the same locks — the map's row (each map change holds it
 * until its commit is flushed), each database's fence_state row, the sequences' — and the same two
 * cores: eight freezes at once made each one's tail several times its median. One at a time
 * (bench, 500 tenants under 1,000 writes/s): freeze p50 / p99 47 / 233 ms against two at a time's
 * 80–102 / 273–313, for 5.7 cutovers/s against 6.3–8.4 — the freeze is what writers wait out.
 */
export const FREEZES_AT_ONCE = freezesAtOnce(process.env.SHARDSHIFT_CUTOVER_FREEZES_AT_ONCE);

/** SHARDSHIFT_CUTOVER_FREEZES_AT_ONCE, checked: a typo must stop the worker, not unbound the gate. */
export function freezesAtOnce(raw: string | undefined): number {
  if (raw === undefined || raw.trim() === "") return 1;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 64) {
    throw new Error(
      `SHARDSHIFT_CUTOVER_FREEZES_AT_ONCE must be a whole number from 1 to 64 (got "${raw}"); unset it for the default, 1.`,
    );
  }
  return n;
}

export function startCutoverScheduler(
  options: Omit<CutoverRunOptions, "worker" | "pauseAt"> & { maxConcurrent?: number; worker?: string },
): CutoverScheduler {
  const runs = new Map<string, CutoverRun>();
  const maxConcurrent = options.maxConcurrent ?? 8;
  const freezeGate = options.freezeGate ?? createGate(FREEZES_AT_ONCE);
  const worker = options.worker ?? workerName();
  const pauseAt = process.env.SHARDSHIFT_CUTOVER_PAUSE_AT || null;
  let stopped = false;
  return {
    async tick() {
      for (const [id, run] of runs) if (run.finished) runs.delete(id);
      if (stopped || runs.size >= maxConcurrent) return;
      // Attempts whose lock a session holds are driven (by us or another worker): skip them here
      // rather than open a connection per attempt to find out.
      const free = await db().$queryRaw<{ id: string }[]>`
        select c.id::text as id from tenant_cutover c
        where c.status = any(${IN_FLIGHT}::text[])
          and not exists (
            select 1 from pg_locks l
            where l.locktype = 'advisory'
              and l.database = (select oid from pg_database where datname = current_database())
              and l.classid = ${CUTOVER_LOCK_CLASS}::oid
              and l.objid = (hashtext(c.id::text)::bigint & 4294967295)::oid and l.objsubid = 2)
        order by c.created_at
        limit ${maxConcurrent * 2}`;
      for (const { id } of free) {
        if (runs.size >= maxConcurrent || stopped) break;
        if (runs.has(id)) continue;
        runs.set(id, startCutoverRun(id, { ...options, worker, pauseAt, freezeGate }));
      }
    },
    running: () => runs.size,
    async stop() {
      stopped = true;
      await Promise.all([...runs.values()].map((r) => r.stop()));
      runs.clear();
    },
  };
}
