// The drawn ladder on a real control plane: drawn once (a second draw, even a concurrent one, is
// refused), stable when settings change and when the census finds new tenants, changed only by
// audited moves and an audited redraw that keeps tenants already on shards where they were; tags
// audited; cohort progress and the listing read the same stored ladder; tenant states derived.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { defaultLadder } from "../../schemas/cohorts";
import { DEFAULT_PLAN_SETTINGS } from "../../schemas/plan";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { createCaller } from "../../trpc/root";
import { systemActor } from "../actor";
import { verifyAuditChain } from "../audit/audit-log";
import { registerDatabase } from "../databases/databases";
import { getCohortProgress } from "../movement/cohort-progress";
import { createPlan, getPlan, updatePlanSettings } from "../plans/plans";
import { DEMO_USERS, ensureDemoUsers } from "../users/users";
import {
  drawLadder,
  listCohorts,
  moveTenant,
  placeCensusNewcomers,
  setTags,
  tenantOverview,
  tenantPlacement,
} from "./cohorts";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
let store: pg.Client;
const actor = {
  ...systemActor("cohorts-test"),
  id: "u-op",
  email: "operator@test",
  role: "operator" as const,
};
const TENANTS = 200;

beforeAll(async () => {
  control = await useControlPlane("cohsvc_control");
  legacy = await createTestDatabase("cohsvc_legacy");
  await legacy.pool.query("create table tenants (tenant_id bigint primary key)");
  shards = [await createTestDatabase("cohsvc_shard0"), await createTestDatabase("cohsvc_shard1")];
  store = new pg.Client({ connectionString: control.url });
  await store.connect();
});

afterAll(async () => {
  await store?.end();
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

const shardIds: string[] = [];
let sourceId = "";
async function newPlan(name: string) {
  if (!sourceId) {
    sourceId = (await registerDatabase(actor, { name: "legacy", kind: "legacy", url: legacy.url })).id;
    for (const [i, s] of shards.entries()) {
      shardIds.push((await registerDatabase(actor, { name: `shard-${i}`, kind: "shard", url: s.url })).id);
    }
  }
  return createPlan(actor, {
    name,
    sourceDatabaseId: sourceId,
    shardDatabaseIds: shardIds,
    shardKeyColumn: "tenant_id",
  });
}

/** A movement whose census counted tenants 1…n, tenant k with k×10 rows in one table, nothing copied. */
async function countCensus(planId: string, n: number, first = 1) {
  await db().dataMovement.upsert({
    where: { planId },
    create: {
      planId,
      status: "running",
      publicationName: "p",
      slotName: "s",
      sourceSchema: {},
      censusAt: new Date(),
    },
    update: {},
  });
  await store.query(
    `insert into backfill_task (plan_id, table_name, kind, status, rows_copied, rows_total, updated_at)
     values ($1::uuid, 't', 'sharded', 'pending', 0, 0, now()) on conflict do nothing`,
    [planId],
  );
  await store.query(
    `insert into tenant_census (plan_id, table_name, tenant_key, position, rows, rows_before)
     select $1::uuid, 't', k::text, k - 1, k * 10, 0 from generate_series($3::int, $2::int) as k`,
    [planId, n, first],
  );
}

const ordinals = async (planId: string) =>
  new Map((await db().cohortMember.findMany({ where: { planId } })).map((m) => [m.tenantKey, m.ordinal]));
const auditOf = (planId: string, action: string) =>
  db().auditEvent.findMany({ where: { planId, action }, orderBy: { seq: "asc" } });

describe("cohort ladder", () => {
  it("is drawn once from the census, with tags, and never re-drawn by itself", {
    timeout: 120_000,
  }, async () => {
    const plan = await newPlan("ladder");
    // Nothing to draw from before the census.
    await expect(drawLadder(actor, { planId: plan.id, redraw: false })).rejects.toThrow(
      /census has not counted/,
    );
    await countCensus(plan.id, TENANTS);

    // Tags: audited with who, before and after; a no-op is not audited.
    await setTags(actor, {
      planId: plan.id,
      tenantKeys: ["1", "2"],
      add: ["vip"],
      remove: [],
      reason: "key accounts",
    });
    await setTags(actor, { planId: plan.id, tenantKeys: ["3"], add: ["do-not-move"], remove: [] });
    await setTags(actor, { planId: plan.id, tenantKeys: ["3"], add: ["do-not-move"], remove: [] });
    const tagEvents = await auditOf(plan.id, "tenant.tags");
    expect(tagEvents).toHaveLength(2);
    expect(tagEvents[0]).toMatchObject({
      actorEmail: "operator@test",
      reason: "key accounts",
      before: { "1": [], "2": [] },
      after: { "1": ["vip"], "2": ["vip"] },
    });

    // The default ladder: 1% of the 199 movable tenants (2) smallest first, no VIPs; 3 held.
    const drawn = await drawLadder(actor, { planId: plan.id, redraw: false });
    if (!drawn.drawn) throw new Error("not drawn");
    expect(drawn.cohorts.map((c) => [c.label, c.tenants, c.cumulativeTenants])).toEqual([
      ["1%", 2, 2],
      ["5%", 8, 10],
      ["25%", 40, 50],
      ["100%", 149, 199],
    ]);
    expect(drawn.cohorts[0]?.members.map((m) => m.tenant)).toEqual(["4", "5"]);
    expect(drawn.cohorts[1]?.members.map((m) => m.tenant).slice(0, 2)).toEqual(["1", "2"]);
    expect(drawn.held?.members.map((m) => [m.tenant, m.tags, m.source])).toEqual([
      ["3", ["do-not-move"], "held"],
    ]);
    expect(drawn.cohorts[0]?.members[0]).toMatchObject({
      rows: 40,
      state: "copying",
      placed: true,
      source: "drawn",
    });
    const draws = await auditOf(plan.id, "cohorts.draw");
    expect(draws).toHaveLength(1);
    expect(draws[0]?.after).toMatchObject({ held: 1, cohorts: [{ label: "1%", added: 2 }, {}, {}, {}] });
    const first = await ordinals(plan.id);

    // Drawing again is refused, naming the way to do it on purpose.
    await expect(drawLadder(actor, { planId: plan.id, redraw: false })).rejects.toThrow(
      /ask for a redraw and say why/,
    );

    // Settings change: the ladder does not (cohort progress reads it, not the new steps).
    const current = await getPlan(plan.id);
    await updatePlanSettings(actor, {
      planId: plan.id,
      expectedVersion: current.version,
      settings: { ...DEFAULT_PLAN_SETTINGS, cohortPercents: [50, 100] },
    });
    expect(await ordinals(plan.id)).toEqual(first);
    const progress = await getCohortProgress(plan.id);
    expect(progress.cohorts.map((c) => c.tenants)).toEqual([2, 8, 40, 149]);
    expect(progress.cohorts.map((c) => c.percent)).toEqual([1, 5, 25, 100]);

    // New tenants in the census, one the smallest of all: the last cohort, nobody else moves.
    await store.query(
      `insert into tenant_census (plan_id, table_name, tenant_key, position, rows, rows_before)
       values ($1::uuid, 't', 'new-small', 900, 1, 0), ($1::uuid, 't', 'new-big', 901, 99999, 0)`,
      [plan.id],
    );
    const listed = await listCohorts(plan.id, 500);
    if (!listed.drawn) throw new Error("not drawn");
    expect(listed.unplaced).toBe(2);
    expect(listed.cohorts[3]?.members.filter((m) => !m.placed).map((m) => m.tenant)).toEqual([
      "new-small",
      "new-big",
    ]);
    expect((await getCohortProgress(plan.id)).cohorts.map((c) => c.tenants)).toEqual([2, 8, 40, 151]);
    expect(await placeCensusNewcomers(plan.id)).toBe(2);
    expect(await placeCensusNewcomers(plan.id)).toBe(0);
    const grown = await ordinals(plan.id);
    expect(grown.get("new-small")).toBe(4);
    expect(new Map([...grown].filter(([t]) => !t.startsWith("new-")))).toEqual(first);

    // A move is an audited edit; a tenant on a shard cannot be moved.
    await moveTenant(actor, { planId: plan.id, tenantKey: "150", ordinal: 1, reason: "friendly customer" });
    expect((await ordinals(plan.id)).get("150")).toBe(1);
    const moves = await auditOf(plan.id, "cohorts.move");
    expect(moves.map((m) => [m.targetId, m.before, m.after, m.reason])).toEqual([
      ["150", { cohort: 4, source: "drawn" }, { cohort: 1, source: "moved" }, "friendly customer"],
    ]);
    expect((await getCohortProgress(plan.id)).cohorts.map((c) => c.tenants)).toEqual([3, 8, 40, 150]);
    await store.query(
      `insert into tenant_route (plan_id, tenant_key, owner_database_id, version) values ($1::uuid, '4', $2::uuid, 1)`,
      [plan.id, shardIds[0]],
    );
    await expect(
      moveTenant(actor, { planId: plan.id, tenantKey: "4", ordinal: 4, reason: "change of mind" }),
    ).rejects.toThrow(/on a shard or being cut over.*Roll it back/);
    await expect(
      moveTenant(actor, { planId: plan.id, tenantKey: "nobody", ordinal: 2, reason: "typo" }),
    ).rejects.toThrow(/census has no tenant "nobody"/);

    // A redraw says why, and tenants already on shards keep their cohort whatever the new policy.
    await expect(drawLadder(actor, { planId: plan.id, redraw: true, reason: "x" })).rejects.toThrow(
      /Say why/,
    );
    const policy = {
      ...defaultLadder([10, 100]),
      steps: defaultLadder([10, 100]).steps.map((s) => ({ ...s, order: "largest" as const })),
    };
    const redrawn = await drawLadder(actor, {
      planId: plan.id,
      redraw: true,
      reason: "largest first after all",
      policy,
    });
    if (!redrawn.drawn) throw new Error("not drawn");
    const after = await ordinals(plan.id);
    expect(after.get("4")).toBe(1);
    expect(after.get("200")).toBe(1); // the largest now leads
    expect(after.get("5")).toBe(2);
    const redraws = await auditOf(plan.id, "cohorts.redraw");
    expect(redraws).toHaveLength(1);
    expect(redraws[0]).toMatchObject({ reason: "largest first after all", after: { keptOnTheirCohort: 1 } });
    expect(redraws[0]?.before).toMatchObject({ cohorts: [{ label: "1%", tenants: 3 }, {}, {}, {}] });

    // Tenant states, derived: on shard from the route, failed from an aborted attempt with an error.
    await store.query(
      `insert into tenant_cutover (plan_id, tenant_key, direction, status, requested_by_email, reason, error, ended_at)
       values ($1::uuid, '6', 'to-shard', 'aborted', 'operator@test', 'go', 'freeze budget missed', now())`,
      [plan.id],
    );
    const states = await listCohorts(plan.id, 500);
    if (!states.drawn) throw new Error("not drawn");
    const all = [...states.cohorts.flatMap((c) => c.members), ...(states.held?.members ?? [])];
    expect(all.find((m) => m.tenant === "4")?.state).toBe("on_shard");
    expect(all.find((m) => m.tenant === "6")).toMatchObject({
      state: "failed",
      error: "freeze budget missed",
    });
    expect(states.cohorts[0]?.states.on_shard).toBe(1);

    // Where the tenants are (the overview's counts): 4 on its shard, 7 cutting over, the rest on legacy.
    await store.query(
      `insert into tenant_cutover (plan_id, tenant_key, direction, status, requested_by_email, reason)
       values ($1::uuid, '7', 'to-shard', 'requested', 'operator@test', 'go')`,
      [plan.id],
    );
    const placement = await tenantPlacement(plan.id, 2);
    expect(placement.onShards).toMatchObject({ tenants: 1, rows: 40, listed: [{ tenant: "4" }] });
    expect(placement.cuttingOver).toMatchObject({ tenants: 1, rows: 70, listed: [{ tenant: "7" }] });
    expect(placement.legacy.tenants).toBe(placement.total - 2);
    expect(placement.legacy.listed).toHaveLength(2); // the limit; largest first
    expect(placement.legacy.listed[0]?.rows).toBeGreaterThanOrEqual(placement.legacy.listed[1]?.rows ?? 0);

    // One tenant as every page names it: state, tags, cohort (held: none).
    expect(await tenantOverview(plan.id, "4")).toMatchObject({
      state: "on_shard",
      cohort: { ordinal: 1 },
      held: false,
      counted: true,
    });
    expect(await tenantOverview(plan.id, "3")).toMatchObject({
      state: "copying",
      tags: ["do-not-move"],
      cohort: null,
      held: true,
    });
    expect(await tenantOverview(plan.id, "6")).toMatchObject({
      state: "failed",
      error: "freeze budget missed",
    });
    // Not counted by the census (created since): the last cohort, as it will be placed.
    expect(await tenantOverview(plan.id, "created-later")).toMatchObject({
      counted: false,
      placed: false,
      cohort: { ordinal: 2 },
    });

    expect((await verifyAuditChain(db())).ok).toBe(true);
  });

  it("lets exactly one of two concurrent first draws win", { timeout: 60_000 }, async () => {
    const plan = await newPlan("race");
    await countCensus(plan.id, 50);
    const outcomes = await Promise.allSettled([
      drawLadder(actor, { planId: plan.id, redraw: false }),
      drawLadder(actor, { planId: plan.id, redraw: false }),
    ]);
    expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(1);
    const refused = outcomes.find((o) => o.status === "rejected");
    expect(String((refused as PromiseRejectedResult).reason)).toMatch(/never re-draw by themselves/);
    expect(await auditOf(plan.id, "cohorts.draw")).toHaveLength(1);
    expect(await db().cohortMember.count({ where: { planId: plan.id } })).toBe(50);
  });

  it("refuses pins of tenants the census does not know, beside the policy field", async () => {
    const plan = await newPlan("pins");
    await countCensus(plan.id, 10);
    await expect(
      drawLadder(actor, {
        planId: plan.id,
        redraw: false,
        policy: { ...defaultLadder([100]), pins: [{ tenantKey: "ghost", ordinal: 1 }] },
      }),
    ).rejects.toMatchObject({
      code: "BAD_REQUEST",
      field: "policy",
      message: expect.stringMatching(/census has no tenant ghost/),
    });
    expect(await db().cohort.count({ where: { planId: plan.id } })).toBe(0);
  });

  it("is reached through the API by role: viewers read, operators edit, inputs checked", {
    timeout: 60_000,
  }, async () => {
    await ensureDemoUsers(systemActor("seed"));
    const callerFor = async (role: "viewer" | "operator") => {
      const demo = DEMO_USERS.find((u) => u.role === role);
      const user = await db().user.findUniqueOrThrow({ where: { email: demo?.email ?? "" } });
      return createCaller({
        user: { id: user.id, email: user.email, name: user.name, role },
        requestId: `t-${role}`,
      });
    };
    const plan = await newPlan("api");
    await countCensus(plan.id, 20);
    const viewer = await callerFor("viewer");
    const operator = await callerFor("operator");
    await expect(viewer.cohorts.draw({ planId: plan.id })).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(
      operator.cohorts.setTags({ planId: plan.id, tenantKeys: ["1"], add: ["Not A Tag"] }),
    ).rejects.toMatchObject({ code: "BAD_REQUEST" });
    await expect(operator.cohorts.draw({ planId: plan.id, redraw: true })).rejects.toThrow(
      /Say why the ladder is drawn again/,
    );
    const drawn = await operator.cohorts.draw({ planId: plan.id });
    expect(drawn.drawn).toBe(true);
    const listed = await viewer.cohorts.list({ planId: plan.id, limit: 1 });
    expect(listed.cohorts.map((c) => [c.tenants, c.members.length])).toEqual([
      [1, 1],
      [0, 0],
      [4, 1],
      [15, 1],
    ]);
    const event = await db().auditEvent.findFirstOrThrow({
      where: { planId: plan.id, action: "cohorts.draw" },
    });
    expect(event.actorEmail).toBe(DEMO_USERS.find((u) => u.role === "operator")?.email);
    expect((await viewer.cohorts.gates({ planId: plan.id, ordinal: 1 })).gates).toHaveLength(6);
    expect((await viewer.cohorts.tripRules({ planId: plan.id })).rules).toHaveLength(6);
  });
});
