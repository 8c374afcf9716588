// Break pass on the one-message apply (one-message-transaction.ts): every value text pgoutput can
// deliver must land on the target exactly as the bound-parameter (pipelined) path writes it, also
// under standard_conforming_strings = off, for a table whose schema, name, columns and types carry
// quotes and placeholder look-alikes. Ground truth: the source row's own text rendering.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { introspectSource } from "../analysis/introspect";
import { setSessionRenderingSql } from "../sql/rendering";
import { mergeRuns, type Statement, type TableApplier, tableApplier } from "./apply";
import { oneMessageTransactionSql } from "./one-message-transaction";
import { readOriginProgress, TargetApplier } from "./target-applier";

const SCHEMA = `we"ird's $1`;
const Q = (s: string) => `"${s.replaceAll('"', '""')}"`;

const COLUMNS: [string, string][] = [
  ["id", "bigint primary key"],
  ["$1", "text"],
  ["it's", "text"],
  ['a"b$2', "text"],
  ["by", "bytea"],
  ["arr", "text[]"],
  ["arr2", "text[]"],
  ["iarr", "int[]"],
  ["js", "json"],
  ["jb", "jsonb"],
  ["r", "int4range"],
  ["tr", "tstzrange"],
  ["comp", `${Q(SCHEMA)}.${Q("pa$1r'")}`],
  ["compa", `${Q(SCHEMA)}.${Q("pa$1r'")}[]`],
  ["dom", `${Q(SCHEMA)}.${Q("do'm")}`],
  ["en", `${Q(SCHEMA)}.${Q('e"n')}`],
  ["ts", "timestamp"],
  ["tz", "timestamptz(3)"],
  ["iv", "interval"],
  ["ivh", "interval hour to minute"],
  ["ivs", "interval day to second(2)"],
  ["m", "money"],
  ["n", "numeric(12,4)"],
  ["vc", "varchar(3)"],
  ["ch", "char(5)"],
  ["bt", "bit(5)"],
  ["vb", "varbit"],
  ["x", "xml"],
  ["pt", "point"],
  ["tsv", "tsvector"],
  ["f8", "float8"],
  ["f4", "real"],
  ["u", "uuid"],
  ["ci", "inet"],
  ["big", "text"],
];

// Each source row, as SQL expressions (dollar-quoted where the value is awkward), one per column.
const LONG = "ab\\'\"$1\n".repeat(3_600); // 32,400 characters: just under the one-message bound
const ROWS: string[][] = [
  [
    "1",
    "$q$it's \\ back\\slash \\' \\\\ E'x' $1 $$ $q$",
    "$q$'; drop table x; --$q$",
    "$q$NULL$q$",
    "'\\x00ff5c27'::bytea",
    `array['NULL', null, 'a"b', 'c\\d', '{}', '', ' sp ', $q$it's$q$]`,
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a dollar-quoted SQL literal, not a template
    '$q${{a,"b\\\\c"},{NULL,"NULL"}}$q$::text[]',
    "'{1,NULL,3}'::int[]",
    `$q\${"k": "v'\\"q\\\\", "n": null, "u": "\\u00e9"}$q$::json`,
    `$q\${"k": "v'\\"q\\\\", "$1": [1, "2"]}$q$::jsonb`,
    "'[1,5)'::int4range",
    '$q$["2020-01-01 00:00+00",infinity)$q$::tstzrange',
    `row($q$a'"\\,()$q$, 7)`,
    `array[row($q$a'"\\$q$, 1), row(null, null)]::${Q(SCHEMA)}.${Q("pa$1r'")}[]`,
    "$q$d'o\\m$q$",
    `$q$it's "x" \\$q$`,
    "'2024-02-29 23:59:59.999999'",
    "'2024-02-29 23:59:59.999+05:30'",
    "'1 year 2 mons -3 days 04:05:06.789'",
    "'1 day 02:03'",
    "'3 days 04:05:06.789'",
    "'-$1,234.56'::money",
    "'12345678.12345'",
    "'abc'",
    "'ab'",
    "B'10101'",
    "B'1'",
    "$q$<a b='1'>&amp;'\\</a>$q$",
    "'(1.5,-2)'",
    "$q$'it''s' a:1 b\\c$q$::tsvector",
    "'NaN'",
    "'-0'",
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
    "'::1/128'",
    "$q$ünïcødé ✓ 日本 \u00a0 E'\\n'$q$",
  ],
  [
    "2",
    "''",
    "$q$\\$q$",
    "$q$'$q$",
    "''::bytea",
    "'{}'::text[]",
    "'{}'::text[]",
    "'{}'::int[]",
    "'\"\\\\\"'::json",
    "'[]'::jsonb",
    "'empty'::int4range",
    "'empty'::tstzrange",
    "row(null, null)",
    "'{}'",
    "''",
    '$q$it\'s "x" \\$q$',
    "'infinity'",
    "'-infinity'",
    "'-178000000 years'",
    "'-2 hours'",
    "'0'",
    "'0'::money",
    "'-0.00005'",
    "''",
    "''",
    "B'00000'",
    "B''",
    "''",
    "'(0,0)'",
    "''::tsvector",
    "'Infinity'",
    "'1e-45'",
    "'00000000-0000-0000-0000-000000000000'",
    "'10.0.0.1/8'",
    `$q$${LONG}$q$`,
  ],
  ["3", ...COLUMNS.slice(1).map(() => "null")],
];

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase("break_one_message_values");
  const s = Q(SCHEMA);
  await database.pool.query(`create schema ${s};
    create type ${s}.${Q("pa$1r'")} as (a text, b int);
    create domain ${s}.${Q("do'm")} as text check (value <> 'forbidden');
    create type ${s}.${Q('e"n')} as enum ('it''s "x" \\', 'plain')`);
  const cols = COLUMNS.map(([n, t]) => `${Q(n)} ${t}`).join(", ");
  await database.pool.query(`create table ${s}.src (${cols})`);
  await database.pool.query(`create table ${s}.${Q("ta'$1\"ble")} (${cols})`);
  for (const row of ROWS)
    await database.pool.query(
      `insert into ${s}.src values (${row.map((v, i) => `${v}::${COLUMNS[i]?.[1].replace(" primary key", "")}`).join(", ")})`,
    );
});

afterAll(async () => {
  await database?.drop();
});

async function sourceTuples(): Promise<Record<string, string | null>[]> {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    await client.query(setSessionRenderingSql());
    const { rows } = await client.query(
      `select ${COLUMNS.map(([n]) => `${Q(n)}::text as ${Q(n)}`).join(", ")} from ${Q(SCHEMA)}.src order by id`,
    );
    return rows;
  } finally {
    await client.end();
  }
}

/** Every column of both tables as text, rendered the same way: they must be equal. */
async function targetTexts(): Promise<{ src: unknown[]; dst: unknown[] }> {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    await client.query(setSessionRenderingSql());
    const read = async (table: string) =>
      (
        await client.query({
          text: `select ${COLUMNS.map(([n]) => `${Q(n)}::text`).join(", ")} from ${Q(SCHEMA)}.${table} order by id`,
          rowMode: "array",
        })
      ).rows;
    return { src: await read("src"), dst: await read(Q("ta'$1\"ble")) };
  } finally {
    await client.end();
  }
}

async function applierFor(): Promise<TableApplier> {
  const client = await database.pool.connect();
  try {
    const schema = await introspectSource(client as pg.ClientBase, "id");
    const info = schema.tables.find((t) => t.name === "ta'$1\"ble");
    if (!info) throw new Error("table not introspected");
    return tableApplier(info);
  } finally {
    client.release();
  }
}

for (const conforming of ["on", "off"]) {
  describe(`one-message apply, standard_conforming_strings = ${conforming} on the target`, () => {
    it("writes every value exactly as the source renders it, on every path", {
      timeout: 120_000,
    }, async () => {
      await database.pool.query(
        `alter database ${Q(database.name)} set standard_conforming_strings = ${conforming}; alter database ${Q(database.name)} set escape_string_warning = off`,
      );
      const table = await applierFor();
      const tuples = await sourceTuples();
      const dst = `${Q(SCHEMA)}.${Q("ta'$1\"ble")}`;
      await database.pool.query(`truncate ${dst}`);
      const origin = `shardshift_break_values_${conforming}`;
      const target = await TargetApplier.open({ url: database.url, ordinal: 0, origin });
      let lsn = 0x100n;
      const stamp = () => {
        lsn += 0x10n;
        return { lsn, commitTimeIso: new Date().toISOString() };
      };
      try {
        const client = (target as unknown as { client: pg.Client }).client;
        const { rows } = await client.query("show standard_conforming_strings");
        expect(rows[0].standard_conforming_strings).toBe(conforming);
        const upserts = tuples.map((t) => table.upsert(t));
        const multi = mergeRuns(upserts);
        expect(multi).toHaveLength(1);

        // 1. Bound parameters: the first use of each statement (pipelined, parses it).
        expect(oneMessageTransactionSql(client, upserts, "commit")).toBeNull();
        for (const s of upserts) await target.apply([s], stamp());
        await target.apply(multi, stamp());
        let texts = await targetTexts();
        expect(texts.dst).toEqual(texts.src);

        // 2. One message, single-row statements (EXECUTE with literals), the long row included.
        await database.pool.query(`truncate ${dst}`);
        for (const s of upserts) expect(oneMessageTransactionSql(client, [s], "commit")).not.toBeNull();
        for (const s of upserts) await target.apply([s], stamp());
        texts = await targetTexts();
        expect(texts.dst).toEqual(texts.src);

        // 3. One message, the multi-row (unnest of text[]) form: all three rows (the long one
        //    included), then two rows and the long one alone.
        await database.pool.query(`truncate ${dst}`);
        expect(oneMessageTransactionSql(client, multi, "commit")).not.toBeNull();
        await target.apply(multi, stamp());
        texts = await targetTexts();
        expect(texts.dst).toEqual(texts.src);
        await database.pool.query(`truncate ${dst}`);
        const twoRows = mergeRuns([upserts[0] as Statement, upserts[2] as Statement]);
        expect(oneMessageTransactionSql(client, twoRows, "commit")).not.toBeNull();
        await target.apply(twoRows, stamp());
        await target.apply([upserts[1] as Statement], stamp());
        texts = await targetTexts();
        expect(texts.dst).toEqual(texts.src);

        // 4. Unnamed statements (partial updates, inlined literals): every non-key column rewritten.
        await database.pool.query(`update ${dst} set "$1" = 'garbage', "it's" = 'garbage'`);
        const nonKey = COLUMNS.slice(1).map(([n]) => n);
        const partials = tuples.map((t) =>
          table.partialUpdate(Object.fromEntries(nonKey.map((n) => [n, t[n] ?? null])), { id: t.id ?? null }),
        );
        expect(partials[0]?.name).toBeUndefined();
        for (const p of partials.slice(0, 2)) await target.apply([p, upserts[2] as Statement], stamp());
        await target.apply([partials[2] as Statement], stamp());
        texts = await targetTexts();
        expect(texts.dst).toEqual(texts.src);

        // 5. Deletes by key, in one message.
        await target.apply(
          tuples.map((t) => table.deleteByKey(t)),
          stamp(),
        );
        expect((await database.pool.query(`select count(*)::int as n from ${dst}`)).rows[0].n).toBe(0);
        expect(await readOriginProgress(database.pool, origin)).toBe(lsn);
      } finally {
        await target.close();
        await database.pool.query(
          `select pg_replication_origin_drop(roname) from pg_replication_origin where roname = '${origin}'`,
        );
      }
    });
  });
}
