// The breaker's cohort scope on a real control plane: which tenants a trip of "cohort k" (or "cohort k
// and every later one") covers — the members whose smallest cohort is k (or later) that a shard owns
// now — and which cutovers in flight it settles. The map and the ladder are written directly: what is
// tested is the reading, not the movement (breaker-ledger.test.ts drives a real rollback).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { systemActor } from "../../services/actor";
import { previewBreaker } from "../../services/breaker/breaker";
import { registerDatabase } from "../../services/databases/databases";
import { createPlan } from "../../services/plans/plans";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { cutoversOfScope, tenantsInScope } from "./scope";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
const actor = systemActor("cohort-scope-test", "engineer@test");

beforeAll(async () => {
  control = await useControlPlane("bcs_control");
  legacy = await createTestDatabase("bcs_legacy");
  await legacy.pool.query("create table tenants (tenant_id bigint primary key)");
  shards = [await createTestDatabase("bcs_shard0"), await createTestDatabase("bcs_shard1")];
}, 120_000);

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

describe("breaker cohort scope", () => {
  it("covers the cohort's own members on shards, or those of it and every later cohort", async () => {
    const source = await registerDatabase(actor, { name: "legacy", kind: "legacy", url: legacy.url });
    const shardIds: string[] = [];
    for (const [i, s] of shards.entries())
      shardIds.push((await registerDatabase(actor, { name: `shard-${i}`, kind: "shard", url: s.url })).id);
    const [s0, s1] = shardIds as [string, string];
    const plan = await createPlan(actor, {
      name: "cohort scope",
      sourceDatabaseId: source.id,
      shardDatabaseIds: shardIds,
      shardKeyColumn: "tenant_id",
    });
    const planId = plan.id;
    // Ladder: 1 = {t1, t2}, 2 = {t3, t4, t5}, 3 = {t6, t7}; t8 held on legacy by a tag (no cohort).
    for (const [ordinal, label] of [
      [1, "1%"],
      [2, "5%"],
      [3, "100%"],
    ] as const) {
      await db().cohort.create({
        data: { planId, ordinal, label, policy: {}, assignedByEmail: actor.email },
      });
    }
    const members: [string, number | null][] = [
      ["t1", 1],
      ["t2", 1],
      ["t3", 2],
      ["t4", 2],
      ["t5", 2],
      ["t6", 3],
      ["t7", 3],
      ["t8", null],
    ];
    await db().cohortMember.createMany({
      data: members.map(([tenantKey, ordinal]) => ({
        planId,
        tenantKey,
        ordinal,
        source: "drawn",
        assignedByEmail: actor.email,
      })),
    });
    // The map: t2, t5 and t7 on legacy; the others on shards (t8 too, though held: not in any cohort).
    const owners: Record<string, string | null> = {
      t1: s0,
      t2: null,
      t3: s1,
      t4: s0,
      t5: null,
      t6: s1,
      t7: null,
      t8: s0,
    };
    await db().tenantRoute.createMany({
      data: Object.entries(owners).map(([tenantKey, ownerDatabaseId]) => ({
        planId,
        tenantKey,
        ownerDatabaseId,
        version: 1n,
      })),
    });

    const keys = (r: Awaited<ReturnType<typeof tenantsInScope>>) => r.onShards.map((t) => t.tenantKey).sort();
    const cohort2 = await tenantsInScope(db(), planId, { kind: "cohort", ordinal: 2, andLater: false });
    expect(keys(cohort2)).toEqual(["t3", "t4"]);
    expect(cohort2.onShards.find((t) => t.tenantKey === "t3")?.ownerId).toBe(s1);
    const fromTwo = await tenantsInScope(db(), planId, { kind: "cohort", ordinal: 2, andLater: true });
    expect(keys(fromTwo)).toEqual(["t3", "t4", "t6"]);
    const first = await tenantsInScope(db(), planId, { kind: "cohort", ordinal: 1, andLater: false });
    expect(keys(first)).toEqual(["t1"]);

    // Cutovers in flight it settles: its members' only (t4's), not t1's (cohort 1) nor an ended one.
    await db().tenantCutover.createMany({
      data: [
        { planId, tenantKey: "t4", direction: "to-legacy", status: "fencing" },
        { planId, tenantKey: "t1", direction: "to-legacy", status: "requested" },
        { planId, tenantKey: "t3", direction: "to-legacy", status: "done" },
      ].map((c) => ({ ...c, requestedByEmail: actor.email, reason: "test" })),
    });
    const where = await cutoversOfScope(db(), planId, { kind: "cohort", ordinal: 2, andLater: false });
    const settled = await db().tenantCutover.findMany({ where, select: { tenantKey: true } });
    expect(settled.map((c) => c.tenantKey)).toEqual(["t4"]);

    // The preview says it in words, and a cohort the ladder does not have is a blocker.
    const preview = await previewBreaker({ planId, scope: { kind: "cohort", ordinal: 2, andLater: true } });
    expect(preview.tenantCount).toBe(3);
    expect(preview.scopeLabel).toBe("the tenants of cohort 2 and every later cohort");
    expect(preview.byShard.map((s) => [s.name, s.tenants]).sort()).toEqual([
      ["shard-0", 1],
      ["shard-1", 2],
    ]);
    const missing = await previewBreaker({ planId, scope: { kind: "cohort", ordinal: 9, andLater: false } });
    expect(missing.blockers.join(" ")).toContain("no cohort 9");
  }, 120_000);
});
