// The durable job queue: pg-boss on the control-plane database, so any number of worker processes
// on any machines share it. Job definitions register here as the engine grows (backfill chunks,
// CDC streams, parity checks); each names its queue and a handler that is safe to run twice.
import PgBoss from "pg-boss";

export const QUEUE_SCHEMA = "pgboss";

/** Queues that exist from the first release on; handlers are attached in server/worker.ts. */
export const QUEUES = {
  heartbeat: "engine.heartbeat",
} as const;

export async function startQueue(connectionString: string): Promise<PgBoss> {
  const boss = new PgBoss({ connectionString, schema: QUEUE_SCHEMA, application_name: "shardshift-worker" });
  // An error event without a listener would crash the process; log it and let pg-boss retry.
  boss.on("error", (error) => console.error("[queue]", error));
  await boss.start();
  for (const name of Object.values(QUEUES)) await boss.createQueue(name);
  return boss;
}
