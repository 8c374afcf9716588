// Creates the source schema on every shard, from the catalog, idempotently: run it twice and the
// second run changes nothing; run it after a crash and it finishes what the first began.
//
// Order matters: schemas, then sequences (serial defaults name them), then tables with their
// primary keys, then indexes and unique constraints, then foreign keys (they reference other
// tables). Sequence values are carried forward from the source so ids generated on a shard after
// cutover do not collide with ids legacy already handed out.
//
// A table that already exists on a shard with different columns is refused, not altered: we do not
// guess which side is right.
import type pg from "pg";
import type { SourceSchema, TableInfo } from "../analysis/introspect";
import { quoteIdent } from "../sql/identifiers";
import { GUARD_DDL } from "./snapshot-guard";

export function columnDefinition(column: TableInfo["columns"][number]): string {
  const parts = [quoteIdent(column.name), column.type];
  // A column's own collation decides how its key ranges sort: the shard must sort like legacy.
  if (column.collation && column.collation !== "default") parts.push(`COLLATE ${column.collation}`);
  if (column.identity)
    parts.push(`GENERATED ${column.identity === "always" ? "ALWAYS" : "BY DEFAULT"} AS IDENTITY`);
  else if (column.generatedExpr) parts.push(`GENERATED ALWAYS AS (${column.generatedExpr}) STORED`);
  else if (column.defaultExpr) parts.push(`DEFAULT ${column.defaultExpr}`);
  if (column.notNull) parts.push("NOT NULL");
  return parts.join(" ");
}

export function createTableSql(table: TableInfo): string {
  const lines = table.columns.map((c) => `  ${columnDefinition(c)}`);
  if (table.primaryKey.length) lines.push(`  PRIMARY KEY (${table.primaryKey.map(quoteIdent).join(", ")})`);
  return `CREATE TABLE IF NOT EXISTS ${table.qualified} (\n${lines.join(",\n")}\n)`;
}

export function createIndexSql(definition: string): string {
  return definition.replace(
    /^CREATE (UNIQUE )?INDEX /,
    (_m, unique: string | undefined) => `CREATE ${unique ?? ""}INDEX IF NOT EXISTS `,
  );
}

export interface PrepareReport {
  shard: string;
  createdTables: string[];
  existingTables: string[];
}

export class ShardSchemaConflictError extends Error {}

async function existingColumns(client: pg.ClientBase, table: TableInfo): Promise<string[] | null> {
  const { rows } = await client.query<{ cols: string[] | null }>(
    `select array(select format('%s %s', a.attname, format_type(a.atttypid, a.atttypmod))
                    from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                   order by a.attnum)::text[] as cols
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p')`,
    [table.schema, table.name],
  );
  return rows[0]?.cols ?? null;
}

async function constraintExists(client: pg.ClientBase, table: TableInfo, name: string): Promise<boolean> {
  const { rowCount } = await client.query(
    `select 1 from pg_constraint con join pg_class c on c.oid = con.conrelid join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = $1 and c.relname = $2 and con.conname = $3`,
    [table.schema, table.name, name],
  );
  return Boolean(rowCount);
}

/** Brings one shard's schema up to the source's. Runs in one transaction: all or nothing. */
export async function prepareShard(
  client: pg.ClientBase,
  shardName: string,
  schema: SourceSchema,
): Promise<PrepareReport> {
  const report: PrepareReport = { shard: shardName, createdTables: [], existingTables: [] };
  await client.query("begin");
  try {
    // Two preparers of the same shard (two workers) must not interleave their DDL.
    await client.query("select pg_advisory_xact_lock(hashtext('shardshift:prepare-shard'))");
    await client.query(GUARD_DDL);
    for (const s of new Set(schema.tables.map((t) => t.schema))) {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(s)}`);
    }
    for (const table of schema.tables) {
      for (const seq of table.sequences.filter((q) => !q.identity)) {
        await client.query(`CREATE SEQUENCE IF NOT EXISTS ${seq.qualified}`);
      }
    }
    for (const table of schema.tables) {
      const wanted = table.columns.map((c) => `${c.name} ${c.type}`);
      const existing = await existingColumns(client, table);
      if (existing) {
        if (existing.join("|") !== wanted.join("|")) {
          throw new ShardSchemaConflictError(
            `${shardName} already has table ${table.qualified} with different columns (${existing.join(", ")}) than the source (${wanted.join(", ")}). ` +
              "Make the shard's table match the source (or drop it there if it holds nothing you need), then start again.",
          );
        }
        report.existingTables.push(table.qualified);
        continue;
      }
      await client.query(createTableSql(table));
      report.createdTables.push(table.qualified);
    }
    for (const table of schema.tables) {
      for (const index of table.indexes) {
        if (index.definition.startsWith("CONSTRAINT ")) {
          if (!(await constraintExists(client, table, index.name))) {
            await client.query(
              `ALTER TABLE ${table.qualified} ADD ${index.definition.replace(/^CONSTRAINT /, `CONSTRAINT ${quoteIdent(index.name)} `)}`,
            );
          }
        } else {
          await client.query(createIndexSql(index.definition));
        }
      }
      for (const seq of table.sequences) {
        if (!seq.identity) {
          await client.query(
            `ALTER SEQUENCE ${seq.qualified} OWNED BY ${table.qualified}.${quoteIdent(seq.column)}`,
          );
        }
        if (seq.lastValue !== null) {
          const name = seq.identity
            ? ((
                await client.query<{ name: string }>("select pg_get_serial_sequence($1, $2) as name", [
                  table.qualified,
                  seq.column,
                ])
              ).rows[0]?.name ?? seq.qualified)
            : seq.qualified;
          // Never move a shard's sequence backwards: it may already have handed out higher ids.
          await client.query(
            "select setval($2::regclass, greatest($1::bigint, coalesce(pg_sequence_last_value($2::regclass), 1)))",
            [seq.lastValue, name],
          );
        }
      }
    }
    for (const table of schema.tables) {
      for (const fk of table.foreignKeys) {
        if (!(await constraintExists(client, table, fk.name))) {
          await client.query(
            `ALTER TABLE ${table.qualified} ADD CONSTRAINT ${quoteIdent(fk.name)} ${fk.definition}`,
          );
        }
      }
    }
    await client.query("commit");
    return report;
  } catch (error) {
    await client.query("rollback").catch(() => {});
    throw error;
  }
}
