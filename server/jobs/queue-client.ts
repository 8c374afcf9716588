// The web server's own queue client, created on first use: it only sends jobs (no maintenance or
// cron loops there; workers run those).
import type PgBoss from "pg-boss";

let queue: Promise<PgBoss> | null = null;

export function webQueueClient(): Promise<PgBoss> {
  if (!queue) {
    queue = (async () => {
      const { startQueue } = await import("./queue");
      const { serverEnv } = await import("../env");
      return startQueue(serverEnv().DATABASE_URL, { supervise: false });
    })();
    queue.catch(() => {
      queue = null;
    });
  }
  return queue;
}
