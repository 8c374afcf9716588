// How one table is read, written and compared: its ordering key, the columns copied and their
// positions. The copier, the streamer and the verifier all work from this plan, so it sits below
// the three of them (as do the snapshot guard, the token bucket and the SQL statement type).
import { createHash } from "node:crypto";
import type { TableInfo } from "../analysis/introspect";

export interface TablePlan {
  table: TableInfo;
  /** Ordering key: the shard key first for sharded tables, then the primary key's columns. */
  keyColumns: string[];
  keyTypes: string[];
  /** Columns copied (generated columns are computed by the shard). */
  copyColumns: string[];
  /** Positions of keyColumns, and of the primary key's columns, within copyColumns. */
  keyPositions: number[];
  primaryKeyPositions: number[];
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
  const copyColumns = table.columns.filter((c) => !c.generatedExpr).map((c) => c.name);
  // Readable, and unique: "a_b"."c" and "a"."b_c" (or two long names) must not share a stage.
  const digest = createHash("sha1").update(table.qualified).digest("hex").slice(0, 8);
  const stage = `ss_stage_${`${table.schema}_${table.name}`.replace(/[^a-z0-9_]/gi, "_").slice(0, 40)}_${digest}`;
  return {
    table,
    keyColumns,
    keyTypes: keyColumns.map(typeOf),
    copyColumns,
    keyPositions: keyColumns.map((c) => copyColumns.indexOf(c)),
    primaryKeyPositions: table.primaryKey.map((c) => copyColumns.indexOf(c)),
    hasIdentity: table.columns.some((c) => c.identity),
    stageName: stage,
  };
}
