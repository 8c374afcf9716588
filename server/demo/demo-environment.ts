// `npm run demo`: a whole migration environment on one machine.
//
// Steps (numbered as printed):
//   1. secrets   reuse or generate the servers' password, the encryption key and the auth secret
//   2. servers   start embedded PostgreSQL: control plane (unless DATABASE_URL), legacy, N shards
//   3. store     migrate the control plane; create the demo accounts; register legacy and shards
//   4. dataset   load the SaaS dataset into legacy once (kept between runs)
//   5. worker    start the engine's job worker in-process
//   6. sample    a sample plan moving data into the shards, once (not with --empty): sample-plan.ts
//   7. web       build the dashboard if its sources changed, then serve it
//   8. workload  start live writes through the router SDK, following the sample plan's routing map
//                over HTTP with an API token (every tenant on legacy when there is no sample plan)
// stop() undoes them in reverse order; every step tolerates a partly started environment.
import fs from "node:fs/promises";
import pg from "pg";
import { createRouter, httpMapSource, type Router } from "../../sdk";
import { db, disconnectDb } from "../db";
import { type EmbeddedServer, ensureDatabase, startEmbeddedServer } from "../embedded/embedded-server";
import { systemActor } from "../services/actor";
import { registerDatabase } from "../services/databases/databases";
import { createApiToken, revokeApiToken } from "../services/routing/api-tokens";
import { DEMO_USERS, ensureDemoUsers } from "../services/users/users";
import { migrateControlPlane } from "../store/migrate";
import { startWorker, type Worker } from "../worker";
import { isDemoDatasetLoaded, loadDemoDataset, summarizeDemoDataset } from "./dataset";
import type { DemoConfig } from "./demo-config";
import { loadDemoSecrets } from "./demo-secrets";
import { buildDashboard, buildIsCurrent, type DashboardServer, serveDashboard } from "./next-server";
import { ensureSamplePlan } from "./sample-plan";
import { startWriteWorkload, type WriteWorkload } from "./workload";

export interface DemoEnvironment {
  url: string;
  accounts: typeof DEMO_USERS;
  servers: { name: string; port: number; dataDir: string }[];
  /** The sample plan's page, when there is one. */
  samplePlanUrl: string | null;
  stop(): Promise<void>;
}

const LEGACY_DB = "monolith";
const SHARD_DB = "app";
const CONTROL_DB = "shardshift";

export async function startDemo(config: DemoConfig, log: (line: string) => void): Promise<DemoEnvironment> {
  const servers: EmbeddedServer[] = [];
  let legacyPool: pg.Pool | undefined;
  let workload: WriteWorkload | undefined;
  let router: Router | undefined;
  let worker: Worker | undefined;
  let web: DashboardServer | undefined;
  let stopping = false;

  const stop = async () => {
    stopping = true;
    await web?.stop().catch(() => {});
    await workload?.stop().catch(() => {});
    await router?.close().catch(() => {});
    await worker?.stop().catch(() => {});
    await legacyPool?.end().catch(() => {});
    await disconnectDb().catch(() => {});
    for (const server of servers.reverse()) await server.stop().catch(() => {});
  };

  const step = async <T>(label: string, fn: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    log(`… ${label}`);
    const result = await fn();
    log(`✓ ${label} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
    return result;
  };

  try {
    if (config.fresh) await fs.rm(config.dataDir, { recursive: true, force: true });
    const secrets = await step("1/8 secrets", () => loadDemoSecrets(config.dataDir, process.env));

    // 2. servers — started in parallel: each initialises its own data directory.
    const specs = [
      ...(config.controlPlaneUrl ? [] : [{ name: "control", port: config.pgPortBase }]),
      { name: "legacy", port: config.pgPortBase + 1 },
      ...Array.from({ length: config.shards }, (_, i) => ({
        name: `shard-${i + 1}`,
        port: config.pgPortBase + 2 + i,
      })),
    ];
    await step(`2/8 PostgreSQL servers (${specs.map((s) => `${s.name}:${s.port}`).join(", ")})`, async () => {
      const results = await Promise.allSettled(
        specs.map((spec) =>
          startEmbeddedServer({ ...spec, rootDir: config.dataDir, password: secrets.pgPassword }),
        ),
      );
      for (const r of results) if (r.status === "fulfilled") servers.push(r.value);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) throw failed.reason;
    });
    const byName = (name: string) => {
      const server = servers.find((s) => s.name === name);
      if (!server) throw new Error(`server ${name} did not start`);
      return server;
    };
    const legacy = byName("legacy");
    const shards = servers.filter((s) => s.name.startsWith("shard-"));

    let controlUrl = config.controlPlaneUrl;
    if (!controlUrl) {
      await ensureDatabase(byName("control").url(), CONTROL_DB);
      controlUrl = byName("control").url(CONTROL_DB);
    }
    await ensureDatabase(legacy.url(), LEGACY_DB);
    for (const shard of shards) await ensureDatabase(shard.url(), SHARD_DB);

    process.env.DATABASE_URL = controlUrl;
    process.env.SHARDSHIFT_SECRET_KEY = secrets.secretKey;
    process.env.BETTER_AUTH_SECRET = secrets.authSecret;
    process.env.SHARDSHIFT_AUDIT_KEY = secrets.auditKey;
    process.env.BETTER_AUTH_URL = `http://localhost:${config.webPort}`;

    await step("3/8 control plane (migrations, demo accounts, topology)", async () => {
      await migrateControlPlane(controlUrl);
      const actor = systemActor("demo-setup", "demo-setup");
      await ensureDemoUsers(actor);
      const wanted = [
        { name: "legacy", kind: "legacy" as const, url: legacy.url(LEGACY_DB) },
        ...shards.map((s) => ({ name: s.name, kind: "shard" as const, url: s.url(SHARD_DB) })),
      ];
      for (const database of wanted) {
        if (await db().database.findUnique({ where: { name: database.name } })) continue;
        await registerDatabase(actor, database);
      }
    });

    legacyPool = new pg.Pool({
      connectionString: legacy.url(LEGACY_DB),
      max: 6,
      application_name: "shardshift-demo",
    });
    legacyPool.on("error", () => {});
    const pool = legacyPool;
    const summary = await step(
      `4/8 demo dataset (${config.tenants.toLocaleString()} tenants, ~${config.rows.toLocaleString()} rows)`,
      async () =>
        (await isDemoDatasetLoaded(pool))
          ? summarizeDemoDataset(pool)
          : loadDemoDataset(pool, {
              tenants: config.tenants,
              rows: config.rows,
              onProgress: (m) => log(`    ${m}`),
            }),
    );
    log(
      `    ${summary.tenants.toLocaleString()} tenants, ${summary.totalRows.toLocaleString()} rows in ${summary.tables.length} tables`,
    );

    worker = await step("5/8 engine worker", () => startWorker(controlUrl, { warmCdcThreads: true }));

    let samplePlanId: string | null = null;
    if (config.empty) {
      log("- 6/8 sample plan left out (--empty)");
    } else {
      const shardNames = shards.map((s) => s.name);
      samplePlanId = await step(`6/8 sample plan (legacy → ${shardNames.join(", ")})`, async () => {
        try {
          const outcome = await ensureSamplePlan(systemActor("demo-setup", "demo-setup"), {
            legacyName: "legacy",
            shardNames,
          });
          log(`    ${outcome.summary}`);
          return outcome.planId;
        } catch (error) {
          // The environment is still worth serving: say what failed and carry on without it.
          log(
            `    the sample plan could not be set up: ${(error as Error).message} ` +
              "The dashboard starts without it; create a plan there, or start over with --fresh.",
          );
          return null;
        }
      });
    }

    web = await step(`7/8 dashboard on port ${config.webPort}`, async () => {
      if (!config.skipBuild && !(await buildIsCurrent())) {
        log("    building the dashboard (first run or sources changed, ~1 min)…");
        await buildDashboard((line) => log(`    ${line}`));
      }
      return serveDashboard(
        config.webPort,
        {
          DATABASE_URL: controlUrl,
          SHARDSHIFT_SECRET_KEY: secrets.secretKey,
          BETTER_AUTH_SECRET: secrets.authSecret,
          SHARDSHIFT_AUDIT_KEY: secrets.auditKey,
          BETTER_AUTH_URL: `http://localhost:${config.webPort}`,
          SHARDSHIFT_DEMO: "1",
        },
        (line) => {
          if (/error|warn/i.test(line)) log(`    web: ${line}`);
        },
      );
    });

    if (config.writesPerSecond > 0) {
      const webUrl = web.url;
      workload = await step(
        `8/8 write workload through the router SDK (${config.writesPerSecond} writes/s)`,
        async () => {
          router = samplePlanId
            ? await demoRouter(samplePlanId, webUrl, legacy.url(LEGACY_DB), shards, (e) => {
                if (!stopping) log(`    router: ${String(e)}`);
              })
            : undefined;
          return startWriteWorkload(router ?? pool, {
            writesPerSecond: config.writesPerSecond,
            onError: (e) => {
              // On Ctrl-C the servers get the signal too; writes failing then are expected.
              if (!stopping) log(`    workload: ${String(e)}`);
            },
          });
        },
      );
    } else {
      log("- 8/8 write workload disabled (SHARDSHIFT_WORKLOAD_RATE=0)");
    }

    return {
      url: web.url,
      accounts: DEMO_USERS,
      servers: servers.map((s) => ({ name: s.name, port: s.port, dataDir: s.dataDir })),
      samplePlanUrl: samplePlanId ? `${web.url}/plans/${samplePlanId}` : null,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

const DEMO_TOKEN_NAME = "demo write workload";

/**
 * The demo workload's router: one pool per database (named as registered), following the sample
 * plan's routing map over HTTP like any application. Each run makes a fresh API token and revokes
 * the previous run's (both audited): a token is shown once and the demo keeps none on disk.
 */
async function demoRouter(
  planId: string,
  webUrl: string,
  legacyUrl: string,
  shards: EmbeddedServer[],
  onMapError: (error: unknown) => void,
): Promise<Router> {
  const actor = systemActor("demo-setup", "demo-setup");
  const previous = await db().apiToken.findMany({
    where: { planId, name: DEMO_TOKEN_NAME, revokedAt: null },
  });
  for (const token of previous) {
    await revokeApiToken(actor, { tokenId: token.id, reason: "replaced by this demo run's token" });
  }
  const { token } = await createApiToken(actor, {
    planId,
    name: DEMO_TOKEN_NAME,
    reason: "the demo's write workload",
  });
  const poolConfig = (connectionString: string) => ({
    connectionString,
    max: 6,
    application_name: "shardshift-demo",
  });
  return createRouter({
    databases: {
      legacy: poolConfig(legacyUrl),
      ...Object.fromEntries(shards.map((s) => [s.name, poolConfig(s.url(SHARD_DB))])),
    },
    map: httpMapSource({ url: `${webUrl}/api/routing/map`, token }),
    onMapError,
  });
}
