// Wakes long-polling routers when their plan's routing map changes. One LISTEN connection per web
// process on the control plane; every change NOTIFYs on commit (routing-map.ts), so a router learns
// of a durable change within milliseconds.
//
// Failure modes it guards against:
// - a notification sent between a request reading the version and starting to wait: the waiter is
//   registered first and the version read after it (waitForMapChange);
// - a lost LISTEN connection (control-plane restart): every waiter is woken to re-read, and the
//   connection is made again with back-off; waiters also re-read every few seconds regardless.
import pg from "pg";
import { ROUTING_MAP_CHANNEL } from "../../engine/routing/routing-map";
import { serverEnv } from "../../env";

const RECHECK_MS = 5_000;
const RECONNECT_MAX_MS = 5_000;

interface Waiter {
  planId: string;
  wake(): void;
}

class RoutingMapNotifier {
  private client: pg.Client | null = null;
  private connecting: Promise<void> | null = null;
  private readonly waiters = new Set<Waiter>();
  private backoffMs = 250;

  constructor(private readonly connectionString: string) {}

  private wakeAll(planId?: string) {
    for (const waiter of this.waiters) if (!planId || waiter.planId === planId) waiter.wake();
  }

  private ensureListening(): Promise<void> {
    if (this.client) return Promise.resolve();
    this.connecting ??= (async () => {
      const client = new pg.Client({
        connectionString: this.connectionString,
        application_name: "shardshift-map-notifier",
      });
      const lost = () => {
        if (this.client !== client) return;
        this.client = null;
        client.end().catch(() => {});
        this.wakeAll();
        if (this.waiters.size > 0) {
          setTimeout(() => void this.ensureListening().catch(() => {}), this.backoffMs).unref();
          this.backoffMs = Math.min(this.backoffMs * 2, RECONNECT_MAX_MS);
        }
      };
      client.on("error", lost);
      client.on("end", lost);
      client.on("notification", (message) => {
        const planId = message.payload?.split(":")[0];
        if (planId) this.wakeAll(planId);
      });
      try {
        await client.connect();
        await client.query(`listen ${ROUTING_MAP_CHANNEL}`);
        this.client = client;
        this.backoffMs = 250;
      } catch (error) {
        await client.end().catch(() => {});
        throw error;
      }
    })().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  /**
   * Resolves once `currentVersion()` exceeds `afterVersion`, or after `timeoutMs`, or when `signal`
   * aborts; returns the version then read.
   */
  async waitForMapChange(
    planId: string,
    afterVersion: number,
    timeoutMs: number,
    currentVersion: () => Promise<number>,
    signal?: AbortSignal,
  ): Promise<number> {
    // Without LISTEN we still answer correctly, only later (the periodic re-read).
    await this.ensureListening().catch(() => {});
    const deadline = Date.now() + timeoutMs;
    let wake: () => void = () => {};
    const waiter: Waiter = { planId, wake: () => wake() };
    this.waiters.add(waiter);
    try {
      for (;;) {
        const woken = new Promise<void>((resolve) => {
          wake = resolve;
        });
        const version = await currentVersion();
        const left = deadline - Date.now();
        if (version > afterVersion || left <= 0 || signal?.aborted) return version;
        let timer: NodeJS.Timeout | undefined;
        const onAbort = () => wake();
        signal?.addEventListener("abort", onAbort, { once: true });
        await Promise.race([
          woken,
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, Math.min(left, RECHECK_MS));
          }),
        ]);
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      }
    } finally {
      this.waiters.delete(waiter);
    }
  }

  async close() {
    const client = this.client;
    this.client = null;
    this.wakeAll();
    await client?.end().catch(() => {});
  }
}

const KEY = Symbol.for("shardshift.routingMapNotifier");
type WithNotifier = typeof globalThis & { [KEY]?: RoutingMapNotifier };

/** The process's notifier (one LISTEN connection), made on first use. */
export function routingMapNotifier(): RoutingMapNotifier {
  const g = globalThis as WithNotifier;
  g[KEY] ??= new RoutingMapNotifier(serverEnv().DATABASE_URL);
  return g[KEY];
}

export async function closeRoutingMapNotifier(): Promise<void> {
  const g = globalThis as WithNotifier;
  const notifier = g[KEY];
  g[KEY] = undefined;
  await notifier?.close();
}
