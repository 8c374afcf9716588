// The reverse replication baseline: PostgreSQL's own logical replication shard → legacy, between
// the same servers our reverse CDC runs on (native.ts is the forward one, legacy → shards).
//
// Each shard server: database native_rev_src with bench_probe and a publication of it (every row:
// the bench writes each shard only the tenants that shard would own, as ours does after cutover).
// Legacy server: database native_rev_dst with bench_probe, the arrival trigger and one
// subscription per shard (copy_data = false: only the probe traffic flows). The shards' tenant sets
// are disjoint, so their rows cannot collide on legacy's (tenant_id, id) key although each shard
// numbers ids from its own sequence. Dropping a subscription drops its slot on the shard.
import pg from "pg";
import type { EmbeddedServer } from "@/server/embedded/embedded-server";
import { ensureDatabase } from "@/server/embedded/embedded-server";
import { runSql } from "./cluster";
import { libpqConninfo } from "./native";
import { ARRIVAL_SETUP_SQL, PROBE_TABLE_SQL } from "./probe";
import { pollUntil } from "./stats";

export const NATIVE_REVERSE_SOURCE_DB = "native_rev_src";
export const NATIVE_REVERSE_TARGET_DB = "native_rev_dst";
const PUBLICATION = "bench_native_rev";
const NAME_PREFIX = "bench_native_rev_";

export interface NativeReverseReplication {
  /** One pool per shard, in the shards' order: where the probe rows are written. */
  sources: pg.Pool[];
  /** Legacy's native_rev_dst, where they arrive. */
  target: pg.Pool;
  /** Drops the subscriptions (and with them their slots on the shards) and closes the pools. */
  stop(): Promise<void>;
}

function pool(url: string, max: number): pg.Pool {
  const p = new pg.Pool({ connectionString: url, max, application_name: "shardshift-bench-native-rev" });
  p.on("error", () => {});
  return p;
}

export async function startNativeReverseReplication(options: {
  legacy: EmbeddedServer;
  shards: readonly EmbeddedServer[];
  password: string;
  sourcePoolSize: number;
}): Promise<NativeReverseReplication> {
  const { legacy, shards } = options;
  const names = shards.map((_, i) => `${NAME_PREFIX}${i + 1}`);
  for (const shard of shards) {
    await ensureDatabase(shard.url(), NATIVE_REVERSE_SOURCE_DB);
    const sourceUrl = shard.url(NATIVE_REVERSE_SOURCE_DB);
    await runSql(sourceUrl, PROBE_TABLE_SQL);
    await runSql(sourceUrl, `drop publication if exists ${pg.escapeIdentifier(PUBLICATION)}`);
    await runSql(
      sourceUrl,
      `create publication ${pg.escapeIdentifier(PUBLICATION)} for table public.bench_probe`,
    );
  }
  await ensureDatabase(legacy.url(), NATIVE_REVERSE_TARGET_DB);
  const targetUrl = legacy.url(NATIVE_REVERSE_TARGET_DB);
  await runSql(targetUrl, PROBE_TABLE_SQL);
  await runSql(targetUrl, ARRIVAL_SETUP_SQL);
  const created: string[] = [];
  const dropSubscriptions = async () => {
    for (const name of created.splice(0)) {
      await runSql(targetUrl, `drop subscription if exists ${pg.escapeIdentifier(name)}`);
    }
  };
  try {
    for (const [i, shard] of shards.entries()) {
      const name = names[i] as string;
      await runSql(
        targetUrl,
        `create subscription ${pg.escapeIdentifier(name)} connection ${pg.escapeLiteral(libpqConninfo(shard, options.password, NATIVE_REVERSE_SOURCE_DB))} ` +
          `publication ${pg.escapeIdentifier(PUBLICATION)} with (copy_data = false)`,
      );
      created.push(name);
    }
    // Streaming means: an apply worker runs on legacy and its slot on each shard is in use.
    await pollUntil(
      "the native reverse subscriptions to start streaming",
      async () => {
        const active = await Promise.all(
          shards.map(async (shard, i) => {
            const rows = await runSql<{ n: number }>(
              shard.url(),
              "select count(*)::int as n from pg_replication_slots where slot_name = $1 and active",
              [names[i]],
            );
            return (rows[0]?.n ?? 0) === 1;
          }),
        );
        return active.every(Boolean);
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  } catch (error) {
    await dropSubscriptions().catch(() => {});
    throw error;
  }
  const sources = shards.map((s) => pool(s.url(NATIVE_REVERSE_SOURCE_DB), options.sourcePoolSize));
  const target = pool(targetUrl, 2);
  return {
    sources,
    target,
    async stop() {
      await Promise.all([target, ...sources].map((p) => p.end().catch(() => {})));
      await dropSubscriptions();
    },
  };
}
