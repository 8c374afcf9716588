// Where does the shard-key column live? A plan is refused if no user table on the source has it.
import type pg from "pg";

export interface KeyColumnReport {
  tablesWithKey: string[];
  tablesWithoutKey: string[];
}

export async function findShardKeyColumn(client: pg.Client, column: string): Promise<KeyColumnReport> {
  const { rows } = await client.query<{ table_name: string; has_key: boolean }>(
    `select format('%I.%I', c.table_schema, c.table_name) as table_name,
            bool_or(c.column_name = $1) as has_key
       from information_schema.columns c
       join information_schema.tables t using (table_schema, table_name)
      where t.table_type = 'BASE TABLE'
        and c.table_schema not in ('pg_catalog', 'information_schema')
        and c.table_schema not like 'pg\\_%'
      group by 1
      order by 1`,
    [column],
  );
  return {
    tablesWithKey: rows.filter((r) => r.has_key).map((r) => r.table_name),
    tablesWithoutKey: rows.filter((r) => !r.has_key).map((r) => r.table_name),
  };
}
