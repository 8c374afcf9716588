// Proves that the committed migrations build exactly the catalog schema.prisma describes:
// tables, columns (type and nullability), enums, primary keys, unique and plain indexes, foreign
// keys. Both sides are rendered as sets of facts and compared, so a missing or extra fact fails.
import fs from "node:fs";
import path from "node:path";
import { get_dmmf } from "@prisma/prisma-schema-wasm";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../testing/databases";
import { migrateControlPlane } from "./migrate";

interface DmmfField {
  name: string;
  dbName?: string | null;
  kind: "scalar" | "enum" | "object";
  type: string;
  isRequired: boolean;
  isList: boolean;
  nativeType: [string, string[]] | null;
  relationFromFields?: string[];
  relationToFields?: string[];
  relationOnDelete?: string;
}
interface DmmfModel {
  name: string;
  dbName: string | null;
  fields: DmmfField[];
}
interface Dmmf {
  datamodel: {
    models: DmmfModel[];
    enums: { name: string; dbName: string | null; values: { name: string; dbName: string | null }[] }[];
    indexes: { model: string; type: "id" | "unique" | "normal" | "fulltext"; fields: { name: string }[] }[];
  };
}

const schemaPath = path.resolve(import.meta.dirname, "../../prisma/schema.prisma");

function schemaFacts(): string[] {
  const dmmf = JSON.parse(
    get_dmmf(JSON.stringify({ prismaSchema: [["schema.prisma", fs.readFileSync(schemaPath, "utf8")]] })),
  ) as Dmmf;
  const models = new Map(dmmf.datamodel.models.map((m) => [m.name, m]));
  const tableOf = (m: DmmfModel) => m.dbName ?? m.name;
  const columnOf = (m: DmmfModel, field: string) => {
    const f = m.fields.find((x) => x.name === field);
    return f?.dbName ?? field;
  };
  const sqlType = (f: DmmfField): string => {
    if (f.kind === "enum") return f.type;
    const native = f.nativeType?.[0];
    switch (f.type) {
      case "String":
        return native === "Uuid" ? "uuid" : "text";
      case "Int":
        return "integer";
      case "BigInt":
        return "bigint";
      case "Boolean":
        return "boolean";
      case "Json":
        return "jsonb";
      case "Float":
        return "double precision";
      case "DateTime":
        return native === "Timestamptz"
          ? `timestamptz(${f.nativeType?.[1][0] ?? 6})`
          : `timestamp(${f.nativeType?.[1][0] ?? 3})`;
      default:
        return `unmapped:${f.type}`;
    }
  };
  const facts: string[] = [];
  for (const e of dmmf.datamodel.enums) {
    facts.push(`enum ${e.dbName ?? e.name} (${e.values.map((v) => v.dbName ?? v.name).join(", ")})`);
  }
  for (const m of dmmf.datamodel.models) {
    facts.push(`table ${tableOf(m)}`);
    for (const f of m.fields) {
      if (f.kind === "object") {
        if (f.relationFromFields?.length) {
          const target = models.get(f.type);
          if (!target) throw new Error(`unknown relation target ${f.type}`);
          facts.push(
            `fk ${tableOf(m)}(${f.relationFromFields.map((c) => columnOf(m, c)).join(",")}) -> ` +
              `${tableOf(target)}(${(f.relationToFields ?? []).map((c) => columnOf(target, c)).join(",")}) ` +
              `on delete ${(f.relationOnDelete ?? "SetNull").toLowerCase()}`,
          );
        }
        continue;
      }
      facts.push(
        `column ${tableOf(m)}.${f.dbName ?? f.name} ${sqlType(f)}${f.isRequired ? " not null" : ""}`,
      );
    }
  }
  for (const index of dmmf.datamodel.indexes) {
    const m = models.get(index.model);
    if (!m) throw new Error(`unknown model ${index.model}`);
    const kind = index.type === "id" ? "primary key" : index.type === "unique" ? "unique index" : "index";
    facts.push(`${kind} ${tableOf(m)}(${index.fields.map((f) => columnOf(m, f.name)).join(",")})`);
  }
  return facts.sort();
}

async function catalogFacts(pool: pg.Pool): Promise<string[]> {
  const facts: string[] = [];
  const enums = await pool.query<{ name: string; labels: string[] }>(`
    select t.typname as name, array_agg(e.enumlabel order by e.enumsortorder)::text[] as labels
    from pg_type t join pg_enum e on e.enumtypid = t.oid
    join pg_namespace n on n.oid = t.typnamespace where n.nspname = 'public' group by t.typname`);
  for (const e of enums.rows) facts.push(`enum ${e.name} (${e.labels.join(", ")})`);
  const tables = await pool.query<{ table_name: string }>(`
    select table_name from information_schema.tables
    where table_schema = 'public' and table_type = 'BASE TABLE' and table_name <> '_prisma_migrations'`);
  for (const t of tables.rows) facts.push(`table ${t.table_name}`);
  const columns = await pool.query<{
    table_name: string;
    column_name: string;
    data_type: string;
    udt_name: string;
    is_nullable: string;
    datetime_precision: number | null;
  }>(`select table_name, column_name, data_type, udt_name, is_nullable, datetime_precision
      from information_schema.columns where table_schema = 'public' and table_name <> '_prisma_migrations'`);
  for (const c of columns.rows) {
    const type =
      c.data_type === "USER-DEFINED"
        ? c.udt_name
        : c.data_type === "timestamp with time zone"
          ? `timestamptz(${c.datetime_precision})`
          : c.data_type === "timestamp without time zone"
            ? `timestamp(${c.datetime_precision})`
            : c.data_type;
    facts.push(`column ${c.table_name}.${c.column_name} ${type}${c.is_nullable === "NO" ? " not null" : ""}`);
  }
  const indexes = await pool.query<{ table: string; primary: boolean; unique: boolean; columns: string[] }>(`
    select c.relname as table, i.indisprimary as primary, i.indisunique as unique,
           array(select a.attname from unnest(i.indkey) with ordinality k(attnum, ord)
                 join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum order by k.ord)::text[] as columns
    from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relname <> '_prisma_migrations'
      -- Partial indexes (a WHERE clause) cannot be said in schema.prisma: they are the migrations' own.
      and i.indpred is null`);
  for (const i of indexes.rows) {
    const kind = i.primary ? "primary key" : i.unique ? "unique index" : "index";
    facts.push(`${kind} ${i.table}(${i.columns.join(",")})`);
  }
  const fks = await pool.query<{
    table: string;
    columns: string[];
    target: string;
    target_columns: string[];
    del: string;
  }>(`
    select c.relname as table, t.relname as target, con.confdeltype as del,
      array(select a.attname from unnest(con.conkey) with ordinality k(n, ord)
            join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.n order by k.ord)::text[] as columns,
      array(select a.attname from unnest(con.confkey) with ordinality k(n, ord)
            join pg_attribute a on a.attrelid = con.confrelid and a.attnum = k.n order by k.ord)::text[] as target_columns
    from pg_constraint con join pg_class c on c.oid = con.conrelid join pg_class t on t.oid = con.confrelid
    join pg_namespace n on n.oid = c.relnamespace where con.contype = 'f' and n.nspname = 'public'`);
  const action: Record<string, string> = {
    a: "noaction",
    r: "restrict",
    c: "cascade",
    n: "setnull",
    d: "setdefault",
  };
  for (const fk of fks.rows) {
    facts.push(
      `fk ${fk.table}(${fk.columns.join(",")}) -> ${fk.target}(${fk.target_columns.join(",")}) on delete ${action[fk.del]}`,
    );
  }
  return facts.sort();
}

describe("control-plane migrations", () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase("schema_match");
  });
  afterAll(async () => {
    await database.drop();
  });

  it("build exactly the catalog that schema.prisma describes", async () => {
    const result = await migrateControlPlane(database.url);
    expect(result.applied.length).toBeGreaterThan(0);
    const expected = schemaFacts();
    const actual = await catalogFacts(database.pool);
    expect({ missingFromDatabase: expected.filter((f) => !actual.includes(f)) }).toEqual({
      missingFromDatabase: [],
    });
    expect({ notInSchema: actual.filter((f) => !expected.includes(f)) }).toEqual({ notInSchema: [] });
  });

  it("apply once: a second run (even concurrent) applies nothing", async () => {
    const [a, b] = await Promise.all([migrateControlPlane(database.url), migrateControlPlane(database.url)]);
    expect(a.applied).toEqual([]);
    expect(b.applied).toEqual([]);
    const { rows } = await database.pool.query(`select count(*)::int as n from "_prisma_migrations"`);
    expect(rows[0].n).toBe(a.alreadyApplied.length);
  });
});
