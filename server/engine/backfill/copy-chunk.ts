// One backfill chunk: copy the next `limit` rows of a table (in key order) from legacy to the
// shards that own them, correctly while writes continue, without locking anything on legacy.
//
// Why this is correct under live writes (snapshot-guarded chunks; docs/backfill-correctness.md):
//   1. On legacy, one REPEATABLE READ READ ONLY transaction takes snapshot σ
//      (pg_current_snapshot) and COPYs the chunk out in it. No row locks, no writes on legacy.
//   2. On each shard, one transaction: take the table's guard lock (CDC takes the same one before
//      writing the table), drop every key CDC wrote with a legacy transaction σ does not see — the
//      shard already holds a newer state of that row, or its deletion — then replace the chunk's key
//      range with σ's rows: delete the range (rows CDC wrote that σ does see; rows of an earlier
//      attempt of this chunk), COPY the rows straight into the table, commit.
// Every row thus ends in its newest state: a change σ saw is in the chunk; a change σ did not see
// was either applied by CDC before the chunk (its key is skipped) or is applied after it (CDC runs
// in commit order). The CDC slot exists before any chunk runs, so no change falls between the two.
//
// Where the range cannot be trusted to mean the same rows on both servers (a text key whose
// collation may sort differently on the shard), the chunk goes through a staging table and an
// upsert by primary key instead of a range delete: slower, same guarantee.
//
// Idempotent: re-copying a chunk (after a crash before its checkpoint) writes the same rows again.
// Shard writes run with session_replication_role = replica so foreign keys between chunks of
// different tables, copied in any order, do not fire (as native logical replication does).
import type { Readable } from "node:stream";
import pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import type { Placement } from "../router/placement";
import { debugTrace, debugTraceOn } from "../shared/debug-trace";
import { assertCopierSql, guardLockSql, TOUCHED_TABLE } from "../shared/snapshot-guard";
import type { TablePlan } from "../shared/table-plan";
import { quoteIdent } from "../sql/identifiers";
import { setLocalRenderingSql } from "../sql/rendering";

/** Decodes one field of COPY text format. */
export function decodeCopyField(field: string): string | null {
  if (field === "\\N") return null;
  if (!field.includes("\\")) return field;
  return field.replace(/\\(.)/g, (_m, c: string) =>
    c === "n"
      ? "\n"
      : c === "t"
        ? "\t"
        : c === "r"
          ? "\r"
          : c === "b"
            ? "\b"
            : c === "f"
              ? "\f"
              : c === "v"
                ? "\v"
                : c,
  );
}

/** `(k1, k2) op ('v1'::t1, 'v2'::t2)`, values as literals (COPY takes no bind parameters). */
function keyPredicate(plan: TablePlan, op: ">" | "<=", values: readonly string[], alias = ""): string {
  const cols = plan.keyColumns.map((c) => `${alias}${quoteIdent(c)}`).join(", ");
  const literals = values.map((v, i) => `${pg.escapeLiteral(v)}::${plan.keyTypes[i]}`).join(", ");
  return `(${cols}) ${op} (${literals})`;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

async function copyLinesInto(client: pg.ClientBase, target: string, plan: TablePlan, lines: string[]) {
  const columns = plan.copyColumns.map(quoteIdent).join(", ");
  const stream = client.query(copyFrom(`COPY ${target} (${columns}) FROM STDIN`));
  await new Promise<void>((resolve, reject) => {
    stream.on("finish", () => resolve());
    stream.on("error", reject);
    stream.end(lines.join(""));
  });
}

export function upsertFromStageSql(plan: TablePlan): string {
  const columns = plan.copyColumns.map(quoteIdent).join(", ");
  const updates = plan.copyColumns
    .filter((c) => !plan.table.primaryKey.includes(c))
    .map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`);
  const conflict = `ON CONFLICT (${plan.table.primaryKey.map(quoteIdent).join(", ")}) ${updates.length ? `DO UPDATE SET ${updates.join(", ")}` : "DO NOTHING"}`;
  return `INSERT INTO ${plan.table.qualified} (${columns}) ${plan.hasIdentity ? "OVERRIDING SYSTEM VALUE " : ""}SELECT ${columns} FROM ${quoteIdent(plan.stageName)} ${conflict}`;
}

/** A chunk as read from legacy: rows in COPY text format, routed to shards, and the snapshot that saw them. */
export interface ChunkRead {
  rows: number;
  /** Key after which the chunk starts (null: the table's start) and key of its last row. */
  afterKey: string[] | null;
  lastKey: string[] | null;
  /** pg_snapshot text of the read, and its xmin (xid8 text). */
  snapshot: string;
  xmin: string;
  /** COPY lines (without the routing column) per shard ordinal. */
  perShard: string[][];
}

/** How a chunk replaces what a shard holds in its key range (see the header). */
export type WriteMode = "range" | "upsert";

/** Reads the next chunk after `afterKey` in one snapshot, without locks. */
export async function readChunk(
  source: pg.ClientBase,
  shardCount: number,
  placement: Placement,
  plan: TablePlan,
  afterKey: string[] | null,
  limit: number,
): Promise<ChunkRead> {
  let data: string;
  let snap: { snapshot: string; xmin: string } | undefined;
  try {
    // The first statement that needs a snapshot fixes the transaction's: pg_current_snapshot names it.
    const opened = (await source.query(
      `begin isolation level repeatable read read only; ${setLocalRenderingSql()}; ` +
        "select pg_current_snapshot()::text as snapshot, pg_snapshot_xmin(pg_current_snapshot())::text as xmin",
    )) as unknown as pg.QueryResult[];
    snap = opened.at(-1)?.rows[0] as { snapshot: string; xmin: string } | undefined;
    if (!snap) throw new Error("The chunk's snapshot could not be read on legacy.");
    const routeBy =
      plan.table.kind === "sharded" ? `src.${quoteIdent(plan.keyColumns[0] ?? "")}::text` : "''";
    const where = afterKey ? `where ${keyPredicate(plan, ">", afterKey, "src.")}` : "";
    const order = plan.keyColumns.map((c) => `src.${quoteIdent(c)}`).join(", ");
    const columns = plan.copyColumns.map((c) => `src.${quoteIdent(c)}`).join(", ");
    data = (
      await readAll(
        source.query(
          copyTo(
            `COPY (select ${routeBy} as ss_route, ${columns} from ${plan.table.qualified} src ${where} ` +
              `order by ${order} limit ${Number(limit)}) TO STDOUT`,
          ),
        ),
      )
    ).toString("utf8");
    await source.query("commit");
  } catch (error) {
    await source.query("rollback").catch(() => {});
    throw error;
  }

  const perShard: string[][] = Array.from({ length: shardCount }, () => []);
  let rows = 0;
  let start = 0;
  let lastLine = "";
  while (start < data.length) {
    const end = data.indexOf("\n", start);
    const line = data.slice(start, end + 1);
    start = end + 1;
    lastLine = line;
    rows++;
    const tab = line.indexOf("\t");
    const rest = line.slice(tab + 1);
    if (plan.table.kind === "reference") {
      for (const target of perShard) target.push(rest);
    } else {
      const key = decodeCopyField(line.slice(0, tab));
      if (key === null)
        throw new Error(`${plan.table.qualified} has a row with a NULL shard key; it cannot be placed.`);
      perShard[placement.shardFor(key)]?.push(rest);
    }
  }
  const lastKey = rows ? keyOfLine(lastLine.slice(lastLine.indexOf("\t") + 1), plan.keyPositions) : null;
  return { rows, afterKey, lastKey, snapshot: snap.snapshot, xmin: snap.xmin, perShard };
}

/** Text values at `positions` of one COPY line (a key is never NULL). */
function keyOfLine(line: string, positions: readonly number[]): string[] {
  const fields = line.replace(/\n$/, "").split("\t");
  return positions.map((p) => decodeCopyField(fields[p] ?? "\\N") ?? "");
}

/**
 * Writes a chunk's rows for one shard in one transaction, skipping keys CDC already carried past
 * the chunk's snapshot. Returns the rows written.
 */
export async function writeChunkToShard(
  client: pg.ClientBase,
  plan: TablePlan,
  chunk: ChunkRead,
  lines: string[],
  mode: WriteMode,
  /** The slice's claim on the table (snapshot-guard.ts): the write fails if another slice took over. */
  owner?: string,
): Promise<number> {
  const rel = pg.escapeLiteral(plan.table.qualified);
  const snapshot = `${pg.escapeLiteral(chunk.snapshot)}::pg_snapshot`;
  // A guard entry's key, cast back to the primary key's types, and the shard row's key.
  const guardKey = plan.table.primaryKey.map((c, i) => {
    const type = plan.table.columns.find((col) => col.name === c)?.type ?? "text";
    return `x.key[${i + 1}]::${type}`;
  });
  const rowKey = plan.table.primaryKey.map((c) => `s.${quoteIdent(c)}`);
  const unseenByChunk = `x.rel = ${rel} and not pg_visible_in_snapshot(x.xid, ${snapshot})`;
  const statements = [
    // Read committed whatever the shard's default: each statement after the lock must see every
    // guard entry CDC committed before the lock was granted.
    "begin isolation level read committed",
    "set local session_replication_role = replica",
    setLocalRenderingSql(),
    guardLockSql(plan.table.qualified),
    ...(owner ? [assertCopierSql(plan.table.qualified, owner)] : []),
    // Entries older than the snapshot's xmin are visible to this and every later chunk.
    `delete from ${TOUCHED_TABLE} where rel = ${rel} and xid < ${pg.escapeLiteral(chunk.xmin)}::xid8`,
    // format('%s') renders with the type's output function, as COPY does (a ::text cast does not
    // for every type: char(n) drops its padding, boolean says "true", inet adds a prefix length).
    `select array[${guardKey.map((k) => `format('%s', ${k})`).join(", ")}] as ss_skip from ${TOUCHED_TABLE} x where ${unseenByChunk}`,
  ];
  if (mode === "range") {
    const range = [
      chunk.afterKey ? keyPredicate(plan, ">", chunk.afterKey, "s.") : null,
      chunk.lastKey ? keyPredicate(plan, "<=", chunk.lastKey, "s.") : null,
    ].filter(Boolean);
    statements.push(
      `delete from ${plan.table.qualified} s where ${range.join(" and ")} and not exists ` +
        `(select 1 from ${TOUCHED_TABLE} x where ${unseenByChunk} and (${guardKey.join(", ")}) = (${rowKey.join(", ")}))`,
    );
  } else {
    statements.push(
      `create temp table if not exists ${quoteIdent(plan.stageName)} (like ${plan.table.qualified}) on commit delete rows`,
    );
  }
  try {
    // One round trip: the simple-query protocol runs them in order, in one transaction.
    const results = (await client.query(statements.join(";\n"))) as unknown as pg.QueryResult[];
    const skip = new Set(
      (results.find((r) => r.fields?.[0]?.name === "ss_skip")?.rows ?? []).map((r) =>
        JSON.stringify(r.ss_skip),
      ),
    );
    const kept = skip.size
      ? lines.filter((line) => !skip.has(JSON.stringify(keyOfLine(line, plan.primaryKeyPositions))))
      : lines;
    if (kept.length) {
      if (mode === "range") {
        await copyLinesInto(client, plan.table.qualified, plan, kept);
      } else {
        await copyLinesInto(client, quoteIdent(plan.stageName), plan, kept);
        await client.query(upsertFromStageSql(plan));
      }
    }
    const shardXid = debugTraceOn
      ? (await client.query<{ x: string }>("select pg_current_xact_id()::text as x")).rows[0]?.x
      : "";
    await client.query("commit");
    debugTrace(
      () =>
        `chunk-ok ${plan.table.qualified} shardxid=${shardXid} db=${(client as unknown as { database?: string }).database}:${(client as unknown as { port?: number }).port} xmin=${chunk.xmin} snap=${chunk.snapshot} range=(${JSON.stringify(chunk.afterKey)},${JSON.stringify(chunk.lastKey)}] kept=${kept.length}/${lines.length} skip=${[...skip].join(";")}`,
    );
    return kept.length;
  } catch (error) {
    await client.query("rollback").catch(() => {});
    debugTrace(
      () =>
        `chunk-fail ${plan.table.qualified} db=${(client as unknown as { database?: string }).database}:${(client as unknown as { port?: number }).port} xmin=${chunk.xmin} range=(${JSON.stringify(chunk.afterKey)},${JSON.stringify(chunk.lastKey)}] err=${(error as Error).message}`,
    );
    throw error;
  }
}

export interface ChunkResult {
  /** Rows read from legacy (a reference row counts once). */
  rows: number;
  /** Key of the last row copied (text values), or null when the table had no rows after `afterKey`. */
  lastKey: string[] | null;
  /** Rows written per shard (after skipping keys CDC carried further). */
  perShard: number[];
}

/**
 * Copies the next chunk after `afterKey` (null = from the start). `shards[i]` is the client of
 * shard ordinal i. Returns rows = 0 when the table is exhausted.
 */
export async function copyChunk(
  source: pg.ClientBase,
  shards: pg.ClientBase[],
  placement: Placement,
  plan: TablePlan,
  afterKey: string[] | null,
  limit: number,
  options: {
    mode?: WriteMode;
    /** Test seam: runs after the chunk was read from legacy, before the shard writes. */
    afterRead?: (chunk: ChunkRead) => Promise<void>;
  } = {},
): Promise<ChunkResult> {
  const chunk = await readChunk(source, shards.length, placement, plan, afterKey, limit);
  if (chunk.rows === 0) return { rows: 0, lastKey: null, perShard: shards.map(() => 0) };
  await options.afterRead?.(chunk);
  return writeChunk(shards, plan, chunk, options.mode ?? "range");
}

/** Writes a chunk read by readChunk to every shard that has rows in it, in parallel. */
export async function writeChunk(
  shards: pg.ClientBase[],
  plan: TablePlan,
  chunk: ChunkRead,
  mode: WriteMode,
  owner?: string,
): Promise<ChunkResult> {
  // Every shard settles before a failure is reported: a retry must not start on a connection that
  // is still in the middle of this chunk's transaction.
  const settled = await Promise.allSettled(
    chunk.perShard.map((lines, ordinal) => {
      const client = shards[ordinal];
      return client && lines.length ? writeChunkToShard(client, plan, chunk, lines, mode, owner) : 0;
    }),
  );
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  const perShard = settled.map((r) => (r.status === "fulfilled" ? r.value : 0));
  return { rows: chunk.rows, lastKey: chunk.lastKey, perShard };
}

/** Collations that sort by bytes on every server and version. */
const BYTEWISE_COLLATIONS = new Set(['"pg_catalog"."C"', '"pg_catalog"."POSIX"', '"pg_catalog"."ucs_basic"']);

/**
 * How a database sorts text by default: provider, locale names AND the collation library's version
 * for them (pg_database_collation_actual_version, PostgreSQL 15+; the engine needs 16+ anyway). Two servers with the same locale
 * names but another glibc or ICU release can order the same strings differently, so a key range
 * would select other rows on the shard than on legacy.
 */
export async function databaseLocale(client: pg.ClientBase): Promise<string> {
  const { rows } = await client.query<{ locale: string }>(
    // Through to_jsonb: datlocprovider, daticulocale and datlocale each exist only in some versions.
    `select concat_ws('|', to_jsonb(d)->>'datlocprovider', datcollate, datctype, to_jsonb(d)->>'datlocale', to_jsonb(d)->>'daticulocale',
                      'version=' || coalesce(pg_database_collation_actual_version(d.oid), '')) as locale
       from pg_database d where datname = current_database()`,
  );
  return rows[0]?.locale ?? "";
}

/**
 * "range" when a key range selects the same rows on legacy and on every shard: no key column sorts
 * by a collation, or only bytewise ones, or the databases' default locales — names and collation
 * versions — are the same. Otherwise "upsert" (see the header).
 */
export async function chooseWriteMode(
  plan: TablePlan,
  source: pg.ClientBase,
  shards: readonly pg.ClientBase[],
): Promise<WriteMode> {
  const sorted = keyCollations(plan);
  if (sorted === "bytewise") return "range";
  if (sorted === "own") return "upsert";
  return writeModeForLocales(await databaseLocale(source), await Promise.all(shards.map(databaseLocale)));
}

/** "range" only if every shard sorts by default exactly as legacy does (pure). */
export function writeModeForLocales(legacy: string, shards: readonly string[]): WriteMode {
  return shards.every((s) => s === legacy) ? "range" : "upsert";
}

function keyCollations(plan: TablePlan): "bytewise" | "own" | "default" {
  const sorted = plan.keyColumns.map((name) => plan.table.columns.find((c) => c.name === name));
  const collations = sorted.map((c) =>
    // Snapshots from before collations were recorded: assume a text-like key sorts by the default.
    c?.collation === undefined
      ? /char|text|citext|name/.test(c?.type ?? "")
        ? "default"
        : null
      : c.collation,
  );
  if (collations.every((c) => c === null || BYTEWISE_COLLATIONS.has(c))) return "bytewise";
  if (collations.some((c) => c !== null && c !== "default" && !BYTEWISE_COLLATIONS.has(c))) return "own";
  return "default";
}
