// Merging a batch's row statements into multi-row statements must keep every row's order and never
// put one key twice in a statement (ON CONFLICT DO UPDATE cannot affect a row twice).
import { describe, expect, it } from "vitest";
import type { TableInfo } from "../analysis/introspect";
import { hashPlacement } from "../router/placement";
import { mergeRuns, tableApplier } from "./apply";
import { ChangeRouter, placementRoute } from "./change-router";

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

describe("ChangeRouter", () => {
  it("removes a row from the other shards when an update without an old image may have moved its tenant", () => {
    // The tenant is not in the primary key, and REPLICA IDENTITY DEFAULT sends no old row.
    const byId: TableInfo = { ...table, name: "notes", qualified: '"public"."notes"', primaryKey: ["id"] };
    const router = new ChangeRouter(
      { shardKeyColumn: "tenant_id", tables: [byId] },
      placementRoute(hashPlacement(3)),
    );
    const relation = {
      relationId: 1,
      schema: "public",
      table: "notes",
      replicaIdentity: "default" as const,
      columns: byId.columns.map((c) => ({
        name: c.name,
        typeOid: c.typeOid,
        typeMod: -1,
        isKey: c.name === "id",
      })),
    };
    const perShard = router.route([
      {
        xid: "10",
        changes: [{ kind: "update", relation, old: null, new: { tenant_id: "7", id: "1", title: "x" } }],
      },
    ]);
    const owner = hashPlacement(3).shardFor("7");
    for (const [shard, statements] of perShard.entries()) {
      expect(statements.map((s) => s.text.split(" ")[0])).toEqual([shard === owner ? "INSERT" : "DELETE"]);
      expect(statements[0]?.touches).toEqual({ relation: '"public"."notes"', key: ["1"], xid: "10" });
    }
  });
});
