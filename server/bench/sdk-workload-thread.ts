// The bench's SDK write workload, in a worker thread of its own. It is the application's load, not
// part of what is measured: on the bench's main thread its 40 lanes kept the event loop busy (a
// mean delay of 60–90 ms per turn), and every service call the bench makes as a user would (a
// breaker trip, a cutover request) paid that on each of its round trips — half a second of the
// click → flip figure was the load generator's, not the product's. Here it has its own event loop,
// pools and router; the map still comes over HTTP from the bench's routing server, as an
// application's does. The thread reports its count of acknowledged writes as it goes and, asked to
// stop, its summary (the ledger sample read back from each key's owner).

import { parentPort, workerData } from "node:worker_threads";
import type pg from "pg";
import { createRouter, httpMapSource, type Router, type TenantHandle } from "../../sdk";
import type { TenantTransaction } from "../../sdk/router";
import { type LedgerEntry, ledgerMismatches, startLedgerWorkload } from "../testing/ledger-workload";
import { type LagSummary, summarizeLags } from "./stats";

/** Lanes write in sequence, each paced to its share: enough of them that one held by a freeze is a small part. */
const SDK_LANES = 40;
/** Ledger entries read back from their owner at the end. */
const LEDGER_SAMPLE = 2_000;
/** How often the thread reports its progress. */
const REPORT_MS = 100;

export interface SdkWorkloadInput {
  databases: Record<string, string>;
  mapUrl: string;
  token: string;
  tenants: string[];
  writesPerSecond: number;
}

export interface SdkWorkloadSummary {
  acknowledged: number;
  writesPerSecond: number;
  /** Every SDK call's duration (ms). */
  calls: LagSummary;
  /** SDK calls that met a freeze (route frozen as the call began, or changed while it ran). */
  metFreeze: LagSummary;
  retries: Record<string, number>;
  unexpected: string[];
  ledgerChecked: number;
  ledgerProblems: string[];
}

export type FromSdkThread =
  | { kind: "ready" }
  | { kind: "progress"; acknowledged: number; describe: string }
  | { kind: "summary"; summary: SdkWorkloadSummary }
  | { kind: "failed"; message: string };

interface CallTiming {
  ms: number;
  metFreeze: boolean;
}

/** The router, with every write timed and marked when the tenant's route was frozen or changed meanwhile. */
function timedRouter(router: Router, record: (timing: CallTiming) => void): Router {
  const time = async <T>(tenant: string, call: () => Promise<T>): Promise<T> => {
    const before = router.route(tenant);
    const started = performance.now();
    try {
      return await call();
    } finally {
      const after = router.route(tenant);
      record({
        ms: performance.now() - started,
        metFreeze: before.frozen || after.version !== before.version,
      });
    }
  };
  return {
    forTenant(id) {
      const inner = router.forTenant(id);
      const handle: TenantHandle = {
        tenant: inner.tenant,
        query: <R extends pg.QueryResultRow>(text: string | pg.QueryConfig, values?: unknown[]) =>
          time(inner.tenant, () => inner.query<R>(text, values)),
        transaction: <T>(fn: (tx: TenantTransaction) => Promise<T>) =>
          time(inner.tenant, () => inner.transaction(fn)),
      };
      return handle;
    },
    route: (tenant) => router.route(tenant),
    get version() {
      return router.version;
    },
    get legacyDatabase() {
      return router.legacyDatabase;
    },
    pool: (database) => router.pool(database),
    waitForVersion: (version, timeoutMs) => router.waitForVersion(version, timeoutMs),
    close: () => router.close(),
  };
}

/** Each sampled key read where its tenant lives now: an acknowledged write reached its owner before any flip (drain). */
async function checkLedger(router: Router, entries: LedgerEntry[]) {
  const every = Math.max(1, Math.floor(entries.length / LEDGER_SAMPLE));
  const sample = entries.filter((_, i) => i % every === 0);
  const byOwner = new Map<string, LedgerEntry[]>();
  for (const e of sample) {
    const owner = router.route(e.tenant).owner;
    byOwner.set(owner, [...(byOwner.get(owner) ?? []), e]);
  }
  let problems: string[] = [];
  for (const [owner, list] of byOwner) {
    problems = problems.concat(await ledgerMismatches(router.pool(owner), list, owner));
  }
  return { checked: sample.length, problems };
}

async function run(input: SdkWorkloadInput, port: NonNullable<typeof parentPort>) {
  const post = (message: FromSdkThread) => port.postMessage(message);
  const router = await createRouter({
    databases: Object.fromEntries(
      Object.entries(input.databases).map(([name, url]) => [
        name,
        { connectionString: url, max: SDK_LANES, application_name: "shardshift-bench-sdk" },
      ]),
    ),
    map: httpMapSource({ url: input.mapUrl, token: input.token, waitSeconds: 20 }),
  });
  const timings: CallTiming[] = [];
  const workload = startLedgerWorkload(
    timedRouter(router, (t) => timings.push(t)),
    { tenants: input.tenants, lanes: SDK_LANES, writesPerSecond: input.writesPerSecond, seed: 12 },
  );
  const report = () => {
    const s = workload.stats();
    post({
      kind: "progress",
      acknowledged: s.acknowledged,
      describe: `${s.acknowledged} acknowledged, retries ${JSON.stringify(s.retries)}, ${s.unexpected.length} unexpected errors${s.unexpected[0] ? ` (first: ${s.unexpected[0]})` : ""}`,
    });
  };
  const timer = setInterval(report, REPORT_MS);
  post({ kind: "ready" });
  port.once("message", () => {
    clearInterval(timer);
    void (async () => {
      try {
        await workload.stop();
        report();
        const stats = workload.stats();
        const ledger = await checkLedger(router, workload.entries()).finally(() => router.close());
        post({
          kind: "summary",
          summary: {
            acknowledged: stats.acknowledged,
            writesPerSecond: stats.writesPerSecond,
            calls: summarizeLags(timings.map((t) => t.ms)),
            metFreeze: summarizeLags(timings.filter((t) => t.metFreeze).map((t) => t.ms)),
            retries: stats.retries,
            unexpected: stats.unexpected,
            ledgerChecked: ledger.checked,
            ledgerProblems: ledger.problems,
          },
        });
      } catch (error) {
        post({ kind: "failed", message: (error as Error).message });
      }
    })();
  });
}

if (parentPort) {
  const port = parentPort;
  run(workerData as SdkWorkloadInput, port).catch((error: Error) =>
    port.postMessage({ kind: "failed", message: error.message } satisfies FromSdkThread),
  );
}
