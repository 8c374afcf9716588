// The backfill's baseline: the fastest plain way to move the same rows, a COPY pipe.
//
// For every table, `COPY (select … where tenant_id = any(<the shard's tenants>)) TO STDOUT` on legacy
// is streamed straight into `COPY … FROM STDIN` on that shard, for both shards at once (reference
// tables go whole to every shard). The targets are fresh databases prepared by prepareShard, so they
// carry the same primary keys, indexes and foreign keys as the movement's targets, and the shard
// session runs with session_replication_role = replica as the backfill's does (foreign keys not
// checked). Tenants are split with the movement's own placement, so the same rows land on the same
// shards: the comparison is rows into indexed tables, like for like.
import { pipeline } from "node:stream/promises";
import pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import type { SourceSchema, TableInfo } from "@/server/engine/analysis/introspect";
import { prepareShard } from "@/server/engine/backfill/prepare-shards";
import type { Placement } from "@/server/engine/router/placement";
import { planTable } from "@/server/engine/shared/table-plan";

export interface RawCopyResult {
  /** Source rows copied (a reference table's rows count once, as the backfill counts them). */
  rows: number;
  ms: number;
  rowsPerSecond: number;
  perTable: { table: string; rows: number; ms: number }[];
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: "shardshift-bench-raw" });
  client.on("error", () => {});
  await client.connect();
  return client;
}

/** Prepares each target exactly as startDataMovement prepares a shard. */
export async function prepareRawTargets(targetUrls: readonly string[], schema: SourceSchema): Promise<void> {
  for (const [i, url] of targetUrls.entries()) {
    const client = await connect(url);
    try {
      await prepareShard(client, `raw-${i + 1}`, schema);
    } finally {
      await client.end();
    }
  }
}

function tenantFilter(table: TableInfo, shardKeyColumn: string, tenants: readonly string[]): string {
  if (table.kind === "reference") return "";
  const type = table.columns.find((c) => c.name === shardKeyColumn)?.type ?? "bigint";
  const list = pg.escapeLiteral(`{${tenants.join(",")}}`);
  return ` where ${pg.escapeIdentifier(shardKeyColumn)} = any(${list}::${type}[])`;
}

async function pipeTable(
  source: pg.Client,
  target: pg.Client,
  table: TableInfo,
  shardKeyColumn: string,
  tenants: readonly string[],
): Promise<number> {
  const columns = planTable(table, shardKeyColumn)
    .copyColumns.map((c) => pg.escapeIdentifier(c))
    .join(", ");
  await target.query("begin");
  try {
    await target.query("set local session_replication_role = replica");
    const into = target.query(copyFrom(`COPY ${table.qualified} (${columns}) FROM STDIN`));
    const out = source.query(
      copyTo(
        `COPY (select ${columns} from ${table.qualified}${tenantFilter(table, shardKeyColumn, tenants)}) TO STDOUT`,
      ),
    );
    await pipeline(out, into);
    await target.query("commit");
    return into.rowCount;
  } catch (error) {
    await target.query("rollback").catch(() => {});
    throw error;
  }
}

/**
 * Copies every table of `schema` from legacy into the raw targets (one per shard), tables one after
 * another, each table's shards in parallel. Timed from the first COPY to the last commit.
 */
export async function runRawCopy(options: {
  sourceUrl: string;
  targetUrls: readonly string[];
  schema: SourceSchema;
  placement: Placement;
  tenantIds: readonly string[];
}): Promise<RawCopyResult> {
  const { schema, placement, targetUrls } = options;
  const tenantsByShard = targetUrls.map((_, i) =>
    options.tenantIds.filter((t) => placement.shardFor(t) === i),
  );
  const sources = await Promise.all(targetUrls.map(() => connect(options.sourceUrl)));
  const targets = await Promise.all(targetUrls.map((url) => connect(url)));
  try {
    const perTable: RawCopyResult["perTable"] = [];
    const started = performance.now();
    for (const table of schema.tables) {
      const tableStarted = performance.now();
      const landed = await Promise.all(
        targets.map((target, i) =>
          pipeTable(sources[i] as pg.Client, target, table, schema.shardKeyColumn, tenantsByShard[i] ?? []),
        ),
      );
      const rows = table.kind === "reference" ? (landed[0] ?? 0) : landed.reduce((a, b) => a + b, 0);
      perTable.push({ table: table.qualified, rows, ms: performance.now() - tableStarted });
    }
    const ms = performance.now() - started;
    const rows = perTable.reduce((n, t) => n + t.rows, 0);
    return { rows, ms, rowsPerSecond: (rows * 1000) / ms, perTable };
  } finally {
    await Promise.all([...sources, ...targets].map((c) => c.end().catch(() => {})));
  }
}
