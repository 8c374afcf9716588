// Waking the workers at once when an operator changes a movement, instead of at their next poll:
// the service sends a NOTIFY in the same transaction as the change (delivered at commit), and every
// worker LISTENs. Polling stays the mechanism of record; a lost notification costs one poll interval.
import pg from "pg";

export const ENGINE_CHANNEL = "shardshift_engine";

/** SQL for the service's transaction: `select pg_notify(…)` with the plan id as payload. */
export const NOTIFY_ENGINE_SQL = `select pg_notify('${ENGINE_CHANNEL}', $1::text)`;

export interface WakeListener {
  stop(): Promise<void>;
}

/** LISTENs on the control plane; `onWake` runs for every notification. Reconnects if the connection drops. */
export async function listenForWakeups(connectionString: string, onWake: () => void): Promise<WakeListener> {
  let stopped = false;
  let client: pg.Client | null = null;
  let retry: NodeJS.Timeout | null = null;
  const connect = async () => {
    const c = new pg.Client({ connectionString, application_name: "shardshift-wake" });
    c.on("notification", () => onWake());
    c.on("error", () => {
      if (stopped) return;
      client = null;
      retry = setTimeout(() => void connect().catch(() => {}), 1_000);
    });
    await c.connect();
    await c.query(`listen ${ENGINE_CHANNEL}`);
    client = c;
  };
  await connect();
  return {
    async stop() {
      stopped = true;
      if (retry) clearTimeout(retry);
      await client?.end().catch(() => {});
    },
  };
}
