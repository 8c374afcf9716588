// The router with the ownership routes, in memory (the streams themselves are tested on real
// servers in fence-messages.test.ts and ownership-streams.test.ts): ownership changes exactly at a
// fence message's place inside a transaction, a fence message stamps every target, and what the
// targets already hold is never judged.
import { describe, expect, it } from "vitest";
import type { SourceSchema, TableInfo } from "../analysis/introspect";
import type { Placement } from "../router/placement";
import { FENCE_MESSAGE_PREFIX, LEGACY_OWNER_KEY } from "../routing/fence-sql";
import { CdcStopError } from "./apply";
import { ChangeRouter } from "./change-router";
import { isDrainMarker } from "./drain-mark";
import { ForwardOwnershipRoute, ReverseOwnershipRoute } from "./ownership-route";
import type { Change, Relation } from "./pgoutput";

function table(name: string, kind: "sharded" | "reference"): TableInfo {
  const columns = [...(kind === "sharded" ? ["tenant_id"] : []), "id", "name"].map((c) => ({
    name: c,
    type: c === "name" ? "text" : "bigint",
    nullable: c === "name",
    default: null,
    identity: null,
    generatedExpr: null,
  }));
  return {
    schema: "public",
    name,
    qualified: `"public"."${name}"`,
    kind,
    columns: columns as unknown as TableInfo["columns"],
    primaryKey: kind === "sharded" ? ["tenant_id", "id"] : ["id"],
    replicaIdentity: "default",
    indexes: [],
    foreignKeys: [],
    sequences: [],
    estimatedRows: 0,
  };
}

const accounts = table("accounts", "sharded");
const plans = table("plans", "reference");
const schema: SourceSchema = { shardKeyColumn: "tenant_id", tables: [accounts, plans] };
const relationOf = (t: TableInfo, id: number): Relation => ({
  relationId: id,
  schema: t.schema,
  table: t.name,
  replicaIdentity: "default",
  columns: t.columns.map((c) => ({
    name: c.name,
    typeOid: 20,
    typeMod: -1,
    isKey: t.primaryKey.includes(c.name),
  })),
});
const accountsRel = relationOf(accounts, 1);
const plansRel = relationOf(plans, 2);
/** Tenants "1".."9" on shard (tenant mod 2). */
const placement: Placement = { shardCount: 2, shardFor: (t) => Number(t) % 2 };
const PLAN = "11111111-1111-1111-1111-111111111111";

const insert = (tenant: string, id: number): Change => ({
  kind: "insert",
  relation: accountsRel,
  new: { tenant_id: tenant, id: String(id), name: "x" },
});
const fence = (
  routes: { tenantKey: string; ownerKey: string; frozen?: boolean }[],
  planId = PLAN,
): Change => ({
  kind: "message",
  lsn: 1n,
  prefix: FENCE_MESSAGE_PREFIX,
  content: Buffer.from(
    JSON.stringify({ planId, version: 2, routes: routes.map((r) => ({ frozen: false, ...r })) }),
  ),
});
const ids = (statements: { name?: string; values: unknown[]; text: string }[]) =>
  statements.map((s) => (isDrainMarker(s) ? "marker" : String(s.values[1])));

describe("ForwardOwnershipRoute", () => {
  const fresh = () =>
    new ForwardOwnershipRoute(placement, { planId: PLAN, selfKey: null, owners: new Map() });

  it("changes ownership at the message's place inside a transaction, and stamps every shard with it", () => {
    const route = fresh();
    const router = new ChangeRouter(schema, route);
    const out = router.route([
      {
        xid: "1",
        commitLsn: 100n,
        endLsn: 110n,
        changes: [
          insert("3", 1),
          fence([{ tenantKey: "3", ownerKey: "shard-b" }]),
          insert("3", 2),
          insert("5", 3),
        ],
      },
      { xid: "2", commitLsn: 200n, endLsn: 210n, changes: [insert("3", 4), insert("4", 5)] },
    ]);
    expect(ids(out[1] ?? [])).toEqual(["1", "3", "marker"]);
    expect(ids(out[0] ?? [])).toEqual(["marker", "5"]);
    expect(route.takeStrays()).toEqual([
      { tenantKey: "3", table: accounts.qualified, commitLsn: 100n, rows: 1 },
      { tenantKey: "3", table: accounts.qualified, commitLsn: 200n, rows: 1 },
    ]);
    expect(route.takeStrays()).toEqual([]);
    expect(route.version).toBe(2);
  });

  it("never judges a transaction the tenant's shard already holds, and skips one every shard holds", () => {
    const route = new ForwardOwnershipRoute(placement, {
      planId: PLAN,
      selfKey: null,
      owners: new Map([["3", { ownerKey: "shard-b", frozen: false }]]),
    });
    const router = new ChangeRouter(schema, route);
    // Shard 1 holds up to 150: the first transaction is there (written before the flip, replayed).
    const out = router.route(
      [
        { xid: "1", commitLsn: 100n, endLsn: 110n, changes: [insert("3", 1), insert("4", 2)] },
        { xid: "2", commitLsn: 200n, endLsn: 210n, changes: [insert("3", 3)] },
      ],
      [50n, 150n],
    );
    expect(ids(out[0] ?? [])).toEqual(["2"]);
    expect(ids(out[1] ?? [])).toEqual([]);
    expect(route.takeStrays().map((s) => s.commitLsn)).toEqual([200n]);
    // Held by both: not even a message in it changes the state (the state read at open is newer).
    router.route(
      [
        {
          xid: "1",
          commitLsn: 100n,
          endLsn: 110n,
          changes: [fence([{ tenantKey: "3", ownerKey: LEGACY_OWNER_KEY }])],
        },
      ],
      [150n, 150n],
    );
    expect(route.ownedHere("3")).toBe(false);
  });

  it("ignores other prefixes and other plans' fences, and refuses a TRUNCATE while a tenant is owned elsewhere", () => {
    const route = fresh();
    const router = new ChangeRouter(schema, route);
    const out = router.route([
      {
        xid: "1",
        endLsn: 10n,
        changes: [
          { kind: "message", lsn: 1n, prefix: "someone_else", content: Buffer.from("{}") },
          fence([{ tenantKey: "3", ownerKey: "shard-b" }], "22222222-2222-2222-2222-222222222222"),
          insert("3", 1),
        ],
      },
    ]);
    expect(ids(out[1] ?? [])).toEqual(["1"]);
    expect(ids(out[0] ?? [])).toEqual([]);
    // A reference table's TRUNCATE is fine; a sharded table's would delete a shard-owned tenant's rows.
    const truncate = (rel: Relation): Change => ({
      kind: "truncate",
      relations: [rel],
      cascade: false,
      restartIdentity: false,
    });
    router.route([{ xid: "2", endLsn: 20n, changes: [fence([{ tenantKey: "3", ownerKey: "shard-b" }])] }]);
    expect(
      router.route([{ xid: "3", endLsn: 30n, changes: [truncate(plansRel)] }]).map((s) => s.length),
    ).toEqual([1, 1]);
    expect(() => router.route([{ xid: "4", endLsn: 40n, changes: [truncate(accountsRel)] }])).toThrow(
      CdcStopError,
    );
  });
});

describe("ReverseOwnershipRoute", () => {
  it("carries a tenant from the message that makes the shard its owner to the one that gives it back", () => {
    const route = new ReverseOwnershipRoute({ planId: PLAN, selfKey: "shard-b", owners: new Map() });
    const router = new ChangeRouter(schema, route, { source: "shard", targets: "legacy database" });
    const out = router.route([
      { xid: "1", endLsn: 10n, changes: [insert("3", 1)] },
      {
        xid: "2",
        endLsn: 20n,
        changes: [
          fence([{ tenantKey: "3", ownerKey: "shard-b" }]),
          insert("3", 2),
          { kind: "insert", relation: plansRel, new: { id: "9", name: "ref" } },
        ],
      },
      {
        xid: "3",
        endLsn: 30n,
        changes: [insert("3", 3), fence([{ tenantKey: "3", ownerKey: LEGACY_OWNER_KEY }])],
      },
      { xid: "4", endLsn: 40n, changes: [insert("3", 4)] },
    ]);
    expect(ids(out[0] ?? [])).toEqual(["2", "marker", "3", "marker"]);
  });
});
