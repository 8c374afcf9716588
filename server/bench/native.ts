// The CDC baseline: PostgreSQL's own logical replication between the same servers.
//
// Legacy server: database native_src with bench_probe and one publication per shard, filtered by
// tenant (tenant_id % shards = i), so inserts are split over the shards as ours are (the split is
// by modulo rather than our hash, which a row filter cannot express; both spread tenants evenly).
// Each shard server: database native_dst with bench_probe, the arrival trigger and a subscription
// (copy_data = false: only the probe traffic flows). Dropping a subscription drops its slot on legacy.
import pg from "pg";
import type { EmbeddedServer } from "@/server/embedded/embedded-server";
import { EMBEDDED_USER, ensureDatabase } from "@/server/embedded/embedded-server";
import { runSql } from "./cluster";
import { ARRIVAL_SETUP_SQL, PROBE_TABLE_SQL } from "./probe";
import { pollUntil } from "./stats";

export const NATIVE_SOURCE_DB = "native_src";
export const NATIVE_TARGET_DB = "native_dst";
const NAME_PREFIX = "bench_native_";

export interface NativeReplication {
  source: pg.Pool;
  targets: pg.Pool[];
  /** Drops the subscriptions (and with them their slots on legacy) and closes the pools. */
  stop(): Promise<void>;
}

export function libpqConninfo(server: EmbeddedServer, password: string, database: string): string {
  const quote = (v: string) => `'${v.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
  return [
    `host=127.0.0.1`,
    `port=${server.port}`,
    `dbname=${quote(database)}`,
    `user=${quote(EMBEDDED_USER)}`,
    `password=${quote(password)}`,
  ].join(" ");
}

function pool(url: string, max: number): pg.Pool {
  const p = new pg.Pool({ connectionString: url, max, application_name: "shardshift-bench-native" });
  p.on("error", () => {});
  return p;
}

export async function startNativeReplication(options: {
  legacy: EmbeddedServer;
  shards: readonly EmbeddedServer[];
  password: string;
  sourcePoolSize: number;
}): Promise<NativeReplication> {
  const { legacy, shards } = options;
  const names = shards.map((_, i) => `${NAME_PREFIX}${i + 1}`);
  await ensureDatabase(legacy.url(), NATIVE_SOURCE_DB);
  const sourceUrl = legacy.url(NATIVE_SOURCE_DB);
  await runSql(sourceUrl, PROBE_TABLE_SQL);
  for (const [i, name] of names.entries()) {
    await runSql(sourceUrl, `drop publication if exists ${pg.escapeIdentifier(name)}`);
    await runSql(
      sourceUrl,
      `create publication ${pg.escapeIdentifier(name)} for table public.bench_probe where ((tenant_id % ${shards.length}) = ${i})`,
    );
  }
  const created: { server: EmbeddedServer; name: string }[] = [];
  const dropSubscriptions = async () => {
    for (const { server, name } of created.splice(0)) {
      await runSql(server.url(NATIVE_TARGET_DB), `drop subscription if exists ${pg.escapeIdentifier(name)}`);
    }
  };
  try {
    for (const [i, shard] of shards.entries()) {
      const name = names[i] as string;
      await ensureDatabase(shard.url(), NATIVE_TARGET_DB);
      const targetUrl = shard.url(NATIVE_TARGET_DB);
      await runSql(targetUrl, PROBE_TABLE_SQL);
      await runSql(targetUrl, ARRIVAL_SETUP_SQL);
      await runSql(
        targetUrl,
        `create subscription ${pg.escapeIdentifier(name)} connection ${pg.escapeLiteral(libpqConninfo(legacy, options.password, NATIVE_SOURCE_DB))} ` +
          `publication ${pg.escapeIdentifier(name)} with (copy_data = false)`,
      );
      created.push({ server: shard, name });
    }
    // Streaming means: an apply worker runs on each shard and its slot on legacy is in use.
    await pollUntil(
      "the native subscriptions to start streaming",
      async () => {
        const rows = await runSql<{ n: number }>(
          legacy.url(),
          "select count(*)::int as n from pg_replication_slots where slot_name = any($1) and active",
          [names],
        );
        return (rows[0]?.n ?? 0) === names.length;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  } catch (error) {
    await dropSubscriptions().catch(() => {});
    throw error;
  }
  const source = pool(sourceUrl, options.sourcePoolSize);
  const targets = shards.map((s) => pool(s.url(NATIVE_TARGET_DB), 2));
  return {
    source,
    targets,
    async stop() {
      await Promise.all([source, ...targets].map((p) => p.end().catch(() => {})));
      await dropSubscriptions();
    },
  };
}
