// One backfill chunk: copy the next `limit` rows of a table (in key order) from legacy to the
// shards that own them, correctly while writes continue.
//
// Why this is correct under live writes (Ghostferry's row-lock method, adapted to COPY):
//   1. On legacy, in a REPEATABLE READ transaction, SELECT the next keys ... FOR SHARE. The chunk's
//      rows are now locked: a writer that updates or deletes one of them waits.
//   2. COPY the same key range out in the same snapshot, so exactly the locked rows are read.
//   3. Write them to each shard, in parallel (COPY into a session temp table, then INSERT … ON
//      CONFLICT DO UPDATE) and COMMIT on the shards.
//   4. Only then end the legacy transaction, releasing the locks.
// A change to a chunk row therefore commits on legacy after the shard already holds the chunk's
// version, so its CDC event (applied in commit order) lands after it: the shard can never end with
// an older version, and a deleted row is never resurrected. Changes committed before the snapshot
// were either seen by the chunk (and their CDC replay rewrites the same or an older state that the
// later events then overwrite) or were deletes (the chunk did not see the row). The CDC slot is
// created before any chunk runs, so no change falls between the two mechanisms.
//
// Idempotent: re-copying a chunk (after a crash before its checkpoint) upserts the same rows.
// Shard writes run with session_replication_role = replica so foreign keys between chunks of
// different tables, copied in any order, do not fire (as native logical replication does).
import type { Readable } from "node:stream";
import type pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import type { TableInfo } from "../analysis/introspect";
import type { Placement } from "../router/placement";
import { quoteIdent } from "../sql/identifiers";

export interface TablePlan {
  table: TableInfo;
  /** Ordering key: the shard key first for sharded tables, then the primary key's columns. */
  keyColumns: string[];
  keyTypes: string[];
  /** Columns copied (generated columns are computed by the shard). */
  copyColumns: string[];
  /** Index of the shard key column within copyColumns, or -1 for reference tables. */
  hasIdentity: boolean;
  stageName: string;
}

export function planTable(table: TableInfo, shardKeyColumn: string): TablePlan {
  if (table.primaryKey.length === 0) {
    throw new Error(
      `${table.qualified} has no primary key; add one before migrating (the backfill copies in key order).`,
    );
  }
  const keyColumns =
    table.kind === "sharded" && table.primaryKey[0] !== shardKeyColumn
      ? [shardKeyColumn, ...table.primaryKey.filter((c) => c !== shardKeyColumn)]
      : [...table.primaryKey];
  const typeOf = (name: string) => {
    const column = table.columns.find((c) => c.name === name);
    if (!column) throw new Error(`${table.qualified} has no column ${name}`);
    return column.type;
  };
  const stage = `ss_stage_${table.schema}_${table.name}`.replace(/[^a-z0-9_]/gi, "_").slice(0, 60);
  return {
    table,
    keyColumns,
    keyTypes: keyColumns.map(typeOf),
    copyColumns: table.columns.filter((c) => !c.generatedExpr).map((c) => c.name),
    hasIdentity: table.columns.some((c) => c.identity),
    stageName: stage,
  };
}

/** Decodes one field of COPY text format (enough for the tenant key: we only hash it). */
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

function keyPredicate(plan: TablePlan, op: ">" | "<=", firstParam: number): string {
  const cols = plan.keyColumns.map(quoteIdent).join(", ");
  const params = plan.keyTypes.map((type, i) => `$${firstParam + i}::${type}`).join(", ");
  return `(${cols}) ${op} (${params})`;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

async function writeStage(client: pg.ClientBase, plan: TablePlan, lines: string[]): Promise<void> {
  const columns = plan.copyColumns.map(quoteIdent).join(", ");
  const stream = client.query(copyFrom(`COPY ${quoteIdent(plan.stageName)} (${columns}) FROM STDIN`));
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

/** Writes COPY-format lines to one shard in one transaction. */
export async function writeChunkToShard(
  client: pg.ClientBase,
  plan: TablePlan,
  lines: string[],
): Promise<void> {
  // One round trip: the simple-query protocol runs both statements.
  await client.query("begin; set local session_replication_role = replica");
  try {
    await client.query(
      `create temp table if not exists ${quoteIdent(plan.stageName)} (like ${plan.table.qualified}) on commit delete rows`,
    );
    await writeStage(client, plan, lines);
    await client.query(upsertFromStageSql(plan));
    await client.query("commit");
  } catch (error) {
    await client.query("rollback").catch(() => {});
    throw error;
  }
}

export interface ChunkResult {
  rows: number;
  /** Key of the last row copied (text values), or null when the table had no rows after `afterKey`. */
  lastKey: string[] | null;
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
  /** Test seam: runs while the chunk's rows are locked on legacy, before the shard writes. */
  whileLocked?: () => Promise<void>,
): Promise<ChunkResult> {
  const keyList = plan.keyColumns.map(quoteIdent).join(", ");
  await source.query("begin isolation level repeatable read");
  try {
    // 1. lock the chunk's rows
    const after = afterKey ? `where ${keyPredicate(plan, ">", 1)}` : "";
    const { rows } = await source.query<{ k: string[] }>({
      text: `select array[${plan.keyColumns.map((c) => `${quoteIdent(c)}::text`).join(", ")}] as k
               from ${plan.table.qualified} ${after} order by ${keyList} limit ${Number(limit)} for share`,
      values: afterKey ?? [],
    });
    const lastKey = rows.at(-1)?.k ?? null;
    if (!lastKey) {
      await source.query("commit");
      return { rows: 0, lastKey: null, perShard: shards.map(() => 0) };
    }
    // 2. read exactly those rows, in the same snapshot
    const routeBy =
      plan.table.kind === "sharded" ? `src.${quoteIdent(plan.keyColumns[0] ?? "")}::text` : "''";
    const srcKeys = plan.keyColumns.map((c) => `src.${quoteIdent(c)}`).join(", ");
    const lower = afterKey ? `${keyPredicate(plan, ">", 1)} and ` : "";
    const upperParam = afterKey ? afterKey.length + 1 : 1;
    const text =
      `COPY (select ${routeBy} as ss_route, ${plan.copyColumns.map((c) => `src.${quoteIdent(c)}`).join(", ")} ` +
      `from ${plan.table.qualified} src where ${lower}${keyPredicate(plan, "<=", upperParam)} order by ${srcKeys}) TO STDOUT`;
    // COPY takes no bind parameters: render the key values as literals, quoted by the server's rules.
    const literalText = await renderParams(source, text, [...(afterKey ?? []), ...lastKey]);
    const data = (await readAll(source.query(copyTo(literalText)))).toString("utf8");

    // 3. route each line to its shard(s)
    const perShardLines: string[][] = shards.map(() => []);
    let count = 0;
    let start = 0;
    while (start < data.length) {
      const end = data.indexOf("\n", start);
      const line = data.slice(start, end + 1);
      start = end + 1;
      const tab = line.indexOf("\t");
      const rest = line.slice(tab + 1);
      count++;
      if (plan.table.kind === "reference") {
        for (const target of perShardLines) target.push(rest);
      } else {
        const key = decodeCopyField(line.slice(0, tab));
        if (key === null)
          throw new Error(`${plan.table.qualified} has a row with a NULL shard key; it cannot be placed.`);
        perShardLines[placement.shardFor(key)]?.push(rest);
      }
    }
    await whileLocked?.();
    // 4. write to every shard, then release the legacy locks
    await Promise.all(
      perShardLines.map((lines, ordinal) => {
        const client = shards[ordinal];
        return client && lines.length ? writeChunkToShard(client, plan, lines) : undefined;
      }),
    );
    await source.query("commit");
    return { rows: count, lastKey, perShard: perShardLines.map((l) => l.length) };
  } catch (error) {
    await source.query("rollback").catch(() => {});
    throw error;
  }
}

/** Substitutes $n with quote_literal(value) computed by the server (no client-side escaping). */
async function renderParams(client: pg.ClientBase, text: string, values: string[]): Promise<string> {
  if (values.length === 0) return text;
  const { rows } = await client.query<{ q: string[] }>(
    "select array(select quote_literal(v) from unnest($1::text[]) v) as q",
    [values],
  );
  const quoted = rows[0]?.q ?? [];
  return text.replace(/\$(\d+)/g, (_m, n: string) => quoted[Number(n) - 1] ?? "NULL");
}
