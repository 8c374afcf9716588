// The durable job queue: pg-boss on the control-plane database, so any number of worker processes
// on any machines share it. Each queue names its policy and retry rules; handlers live in
// server/jobs/handlers.ts and are safe to run twice (they resume from stored checkpoints).
import PgBoss from "pg-boss";

export const QUEUE_SCHEMA = "pgboss";

export const QUEUES = {
  heartbeat: "engine.heartbeat",
  /** One bounded slice of one table's backfill; `short` keeps at most one queued per task. */
  backfillSlice: "backfill.slice",
  /** One parity check of one plan (full or recent); `short` keeps at most one queued per plan. */
  parityCheck: "parity.check",
  /** Rows per tenant per sharded table of one plan, once per data movement. */
  tenantCensus: "tenant.census",
  /** A signed digest of the audit chain's head (cron schedule, or on request): server/jobs/audit-digest-job.ts. */
  auditDigest: "audit.digest",
} as const;

const QUEUE_OPTIONS: Record<(typeof QUEUES)[keyof typeof QUEUES], Omit<PgBoss.Queue, "name">> = {
  [QUEUES.heartbeat]: { policy: "standard" },
  // A slice runs ≤ 15 s; a worker killed mid-slice leaves its job active until it expires, but the
  // task's advisory lock dies with the worker, so the next queued slice resumes at once.
  [QUEUES.backfillSlice]: { policy: "short", retryLimit: 1000, retryDelay: 2, expireInSeconds: 120 },
  [QUEUES.parityCheck]: { policy: "short", retryLimit: 3, retryDelay: 5, expireInSeconds: 900 },
  [QUEUES.tenantCensus]: { policy: "short", retryLimit: 20, retryDelay: 10, expireInSeconds: 3_600 },
  [QUEUES.auditDigest]: { policy: "short", retryLimit: 5, retryDelay: 10, expireInSeconds: 60 },
};

export interface ParityCheckJob {
  planId: string;
  kind: "full" | "recent";
}

export interface TenantCensusJob {
  planId: string;
}

export interface BackfillSliceJob {
  taskId: string;
}

/** `supervise: false` for processes that only send jobs (the web server): no maintenance loops there. */
export async function startQueue(
  connectionString: string,
  options: { supervise?: boolean } = {},
): Promise<PgBoss> {
  const boss = new PgBoss({
    connectionString,
    schema: QUEUE_SCHEMA,
    application_name: "shardshift-worker",
    supervise: options.supervise ?? true,
    schedule: options.supervise ?? true,
  });
  // An error event without a listener would crash the process; log it and let pg-boss retry.
  boss.on("error", (error) => console.error("[queue]", error));
  await boss.start();
  for (const [name, options] of Object.entries(QUEUE_OPTIONS)) {
    if (!(await boss.getQueue(name))) await boss.createQueue(name, { name, ...options });
  }
  return boss;
}
