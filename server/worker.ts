// The engine process (`npm run worker`). It works durable jobs from the queue on the control-plane
// database; start as many as you like, on any machine that reaches it. `npm run demo` runs one
// in-process. Stops cleanly on SIGINT/SIGTERM: in-flight jobs finish or go back to the queue.
import { pathToFileURL } from "node:url";
import type PgBoss from "pg-boss";
import { serverEnv } from "./env";
import { QUEUES, startQueue } from "./jobs/queue";
import { migrateControlPlane } from "./store/migrate";

export interface Worker {
  boss: PgBoss;
  stop(): Promise<void>;
}

export async function startWorker(connectionString: string): Promise<Worker> {
  const boss = await startQueue(connectionString);
  await boss.work(QUEUES.heartbeat, async () => {
    // Proves a worker is alive and consuming; engine jobs arrive with the backfill issue.
  });
  return {
    boss,
    stop: () => boss.stop({ graceful: true, timeout: 10_000 }),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const url = serverEnv().DATABASE_URL;
  await migrateControlPlane(url);
  const worker = await startWorker(url);
  console.log("Shardshift worker is running. Ctrl-C stops it.");
  const stop = async () => {
    await worker.stop();
    process.exit(0);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}
