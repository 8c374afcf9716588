// Which trips this worker drives: every supervisor tick, the trips in flight (tripped, or
// rolling_back with their worker gone) whose lock no session holds. Several workers may run this
// at once: a trip's advisory lock (run-rollback.ts) lets exactly one drive it.
import pg from "pg";
import { db } from "../store/db";
import {
  BREAKER_LOCK_CLASS,
  type RollbackRun,
  type RollbackRunOptions,
  startRollbackRun,
} from "./run-rollback";
import { warmRollbackPath } from "./warm-up";

export interface BreakerScheduler {
  tick(): Promise<void>;
  stop(): Promise<void>;
}

export function startBreakerScheduler(options: Omit<RollbackRunOptions, "pauseAt">): BreakerScheduler {
  const runs = new Map<string, RollbackRun>();
  const pauseAt = process.env.SHARDSHIFT_BREAKER_PAUSE_AT || null;
  let stopped = false;
  // One control-plane connection kept open for the next run (the session that will hold its trip's
  // lock): opening one is on the path from the click to the flip, and under load it took seconds.
  let spare: pg.Client | null = null;
  let refilling = false;
  const refill = () => {
    if (stopped || spare || refilling) return;
    refilling = true;
    const client = new pg.Client({
      connectionString: options.controlPlaneUrl,
      application_name: "shardshift-breaker-lock",
    });
    // A spare the server dropped is not handed out: the next take opens a fresh one.
    client.on("error", () => {
      if (spare === client) spare = null;
    });
    client.connect().then(
      () => {
        refilling = false;
        if (stopped) void client.end().catch(() => {});
        else spare = client;
      },
      () => {
        refilling = false;
      },
    );
  };
  /** The spare, if one is open (synchronous: no await between a trip's check and its run). */
  const take = (): pg.Client | undefined => {
    const client = spare ?? undefined;
    spare = null;
    refill();
    return client;
  };
  refill();
  void warmRollbackPath();
  return {
    async tick() {
      for (const [id, run] of runs) if (run.finished) runs.delete(id);
      if (stopped) return;
      const free = await db().$queryRaw<{ id: string }[]>`
        select t.id::text as id from breaker_trip t
        where t.status in ('tripped', 'rolling_back')
          and not exists (
            select 1 from pg_locks l
            where l.locktype = 'advisory'
              and l.database = (select oid from pg_database where datname = current_database())
              and l.classid = ${BREAKER_LOCK_CLASS}::oid
              and l.objid = (hashtext(t.id::text)::bigint & 4294967295)::oid and l.objsubid = 2)
        order by t.created_at`;
      for (const { id } of free) {
        if (stopped || runs.has(id)) continue;
        runs.set(id, startRollbackRun(id, { ...options, pauseAt, connection: take() }));
      }
    },
    async stop() {
      stopped = true;
      void spare?.end().catch(() => {});
      spare = null;
      await Promise.all([...runs.values()].map((r) => r.stop()));
      runs.clear();
    },
  };
}
