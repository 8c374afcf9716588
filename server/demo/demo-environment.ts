// `npm run demo`: a whole migration environment on one machine.
//
// Steps (numbered as printed):
//   1. secrets   reuse or generate the servers' password, the encryption key and the auth secret
//   2. servers   start embedded PostgreSQL: control plane (unless DATABASE_URL), legacy, N shards
//   3. store     migrate the control plane; create the demo accounts; register legacy and shards
//   4. dataset   load the SaaS dataset into legacy once (kept between runs)
//   5. workload  start live writes against legacy
//   6. worker    start the engine's job worker in-process
//   7. web       build the dashboard if its sources changed, then serve it
// stop() undoes them in reverse order; every step tolerates a partly started environment.
import fs from "node:fs/promises";
import pg from "pg";
import { db, disconnectDb } from "../db";
import { type EmbeddedServer, ensureDatabase, startEmbeddedServer } from "../embedded/embedded-server";
import { isDemoDatasetLoaded, loadDemoDataset, summarizeDemoDataset } from "../engine/demo/dataset";
import { startWriteWorkload, type WriteWorkload } from "../engine/demo/workload";
import { systemActor } from "../services/actor";
import { registerDatabase } from "../services/databases/databases";
import { DEMO_USERS, ensureDemoUsers } from "../services/users/users";
import { migrateControlPlane } from "../store/migrate";
import { startWorker, type Worker } from "../worker";
import type { DemoConfig } from "./demo-config";
import { loadDemoSecrets } from "./demo-secrets";
import { buildDashboard, buildIsCurrent, type DashboardServer, serveDashboard } from "./next-server";

export interface DemoEnvironment {
  url: string;
  accounts: typeof DEMO_USERS;
  servers: { name: string; port: number; dataDir: string }[];
  stop(): Promise<void>;
}

const LEGACY_DB = "monolith";
const SHARD_DB = "app";
const CONTROL_DB = "shardshift";

export async function startDemo(config: DemoConfig, log: (line: string) => void): Promise<DemoEnvironment> {
  const servers: EmbeddedServer[] = [];
  let legacyPool: pg.Pool | undefined;
  let workload: WriteWorkload | undefined;
  let worker: Worker | undefined;
  let web: DashboardServer | undefined;
  let stopping = false;

  const stop = async () => {
    stopping = true;
    await web?.stop().catch(() => {});
    await workload?.stop().catch(() => {});
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
    const secrets = await step("1/7 secrets", () => loadDemoSecrets(config.dataDir, process.env));

    // 2. servers — started in parallel: each initialises its own data directory.
    const specs = [
      ...(config.controlPlaneUrl ? [] : [{ name: "control", port: config.pgPortBase }]),
      { name: "legacy", port: config.pgPortBase + 1 },
      ...Array.from({ length: config.shards }, (_, i) => ({
        name: `shard-${i + 1}`,
        port: config.pgPortBase + 2 + i,
      })),
    ];
    await step(`2/7 PostgreSQL servers (${specs.map((s) => `${s.name}:${s.port}`).join(", ")})`, async () => {
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
    process.env.BETTER_AUTH_URL = `http://localhost:${config.webPort}`;

    await step("3/7 control plane (migrations, demo accounts, topology)", async () => {
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
      `4/7 demo dataset (${config.tenants.toLocaleString()} tenants, ~${config.rows.toLocaleString()} rows)`,
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

    if (config.writesPerSecond > 0) {
      workload = await step(`5/7 write workload (${config.writesPerSecond} writes/s)`, async () =>
        startWriteWorkload(pool, {
          writesPerSecond: config.writesPerSecond,
          onError: (e) => {
            // On Ctrl-C the servers get the signal too; writes failing then are expected.
            if (!stopping) log(`    workload: ${String(e)}`);
          },
        }),
      );
    } else {
      log("- 5/7 write workload disabled (SHARDSHIFT_WORKLOAD_RATE=0)");
    }

    worker = await step("6/7 engine worker", () => startWorker(controlUrl));

    web = await step(`7/7 dashboard on port ${config.webPort}`, async () => {
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
          BETTER_AUTH_URL: `http://localhost:${config.webPort}`,
          SHARDSHIFT_DEMO: "1",
        },
        (line) => {
          if (/error|warn/i.test(line)) log(`    web: ${line}`);
        },
      );
    });

    return {
      url: web.url,
      accounts: DEMO_USERS,
      servers: servers.map((s) => ({ name: s.name, port: s.port, dataDir: s.dataDir })),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
