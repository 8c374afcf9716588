// Merging a batch's row statements into multi-row statements must keep every row's order and never
// put one key twice in a statement (ON CONFLICT DO UPDATE cannot affect a row twice).
import { describe, expect, it } from "vitest";
import type { TableInfo } from "../analysis/introspect";
import { mergeRuns, tableApplier } from "./apply";

const table: TableInfo = {
  schema: "public",
  name: "tasks",
  qualified: '"public"."tasks"',
  kind: "sharded",
  columns: [
    {
      name: "tenant_id",
      type: "bigint",
      typeOid: 20,
      notNull: true,
      defaultExpr: null,
      identity: null,
      generatedExpr: null,
    },
    {
      name: "id",
      type: "bigint",
      typeOid: 20,
      notNull: true,
      defaultExpr: null,
      identity: null,
      generatedExpr: null,
    },
    {
      name: "title",
      type: "text",
      typeOid: 25,
      notNull: false,
      defaultExpr: null,
      identity: null,
      generatedExpr: null,
    },
  ],
  primaryKey: ["tenant_id", "id"],
  replicaIdentity: "default",
  indexes: [],
  foreignKeys: [],
  sequences: [],
  estimatedRows: 0,
};

describe("mergeRuns", () => {
  it("folds consecutive rows of one table and kind, in order, splitting where a key repeats", () => {
    const a = tableApplier(table);
    const row = (id: string, title: string) => ({ tenant_id: "7", id, title });
    const merged = mergeRuns([
      a.upsert(row("1", "a")),
      a.upsert(row("2", "b")),
      a.upsert(row("1", "a again")),
      a.deleteByKey(row("3", "")),
      a.deleteByKey(row("4", "")),
      a.upsert(row("5", "e")),
    ]);
    expect(merged.map((s) => s.text.split(" ")[0])).toEqual(["INSERT", "INSERT", "DELETE", "INSERT"]);
    expect(merged[0]?.values).toEqual([
      ["7", "7"],
      ["1", "2"],
      ["a", "b"],
    ]);
    expect(merged[0]?.text).toContain("unnest(");
    expect(merged[1]?.values).toEqual(["7", "1", "a again"]); // a single row keeps the one-row form
    expect(merged[2]?.values).toEqual([
      ["7", "7"],
      ["3", "4"],
    ]);
  });
});
