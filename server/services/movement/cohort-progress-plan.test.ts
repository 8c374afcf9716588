// Cohort progress stays cheap for a plan whose census was just written, beside earlier plans'
// censuses that the statistics already know. There the planner guesses one census row for the new
// plan, and the query it wrote then re-read the plan's whole census once per census row: about 150 s
// of a core for 2,000 tenants in the browser tests. The backfill page polls the query every 2 s in
// the same request as the movement's status (one tRPC batch), so the status froze with it and a
// pause's dialog waited on it. Work is measured in rows the query's plan handled (deterministic),
// not in time.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { systemActor } from "../actor";
import { registerDatabase } from "../databases/databases";
import { createPlan } from "../plans/plans";
import { cohortProgressSql, getCohortProgress } from "./cohort-progress";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
const actor = systemActor("cohort-plan-test", "engineer@test");
const LADDER = [1, 5, 25, 100];
const TENANTS = 2_000;
const SHARDED_TABLES = 7;
/**
 * Every table's checkpoint: halfway in copy order (by the key's value) but near the end of the
 * census's index (by the key's text), where a lookup by plan id alone finds it last.
 */
const CHECKPOINT_TENANT = 999;

beforeAll(async () => {
  control = await useControlPlane("cohq_control");
  legacy = await createTestDatabase("cohq_legacy");
  await legacy.pool.query("create table tenants (tenant_id bigint primary key)");
  shards = [await createTestDatabase("cohq_shard0"), await createTestDatabase("cohq_shard1")];
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

/**
 * A running movement whose census is written (TENANTS tenants of 10 rows in each of SHARDED_TABLES
 * tables) and whose tables are copied up to CHECKPOINT_TENANT, as the census job and copiers leave it.
 */
async function seedCountedMovement(store: pg.ClientBase, planId: string) {
  await db().dataMovement.create({
    data: {
      planId,
      status: "running",
      publicationName: "p",
      slotName: "s",
      sourceSchema: {},
      censusAt: new Date(),
    },
  });
  await store.query(
    `insert into backfill_task (plan_id, table_name, kind, status, last_key, rows_copied, rows_total, updated_at)
     select $1::uuid, 't' || i, 'sharded', 'running', jsonb_build_array($4::text, '1'),
            $4::int * 10, $2::int * 10, now()
     from generate_series(1, $3::int) as i`,
    [planId, TENANTS, SHARDED_TABLES, CHECKPOINT_TENANT],
  );
  await store.query(
    `insert into tenant_census (plan_id, table_name, tenant_key, position, rows, rows_before)
     select $1::uuid, 't' || i, k::text, k - 1, 10, (k - 1) * 10
     from generate_series(1, $3::int) as i, generate_series(1, $2::int) as k`,
    [planId, TENANTS, SHARDED_TABLES],
  );
}

interface PlanNode {
  "Actual Rows": number;
  "Actual Loops": number;
  "Rows Removed by Filter"?: number;
  "Rows Removed by Join Filter"?: number;
  Plans?: PlanNode[];
}

/** Rows every node of an EXPLAIN ANALYZE produced or threw away, over all its loops: the query's work. */
function rowsHandled(node: PlanNode): number {
  const perLoop =
    node["Actual Rows"] + (node["Rows Removed by Filter"] ?? 0) + (node["Rows Removed by Join Filter"] ?? 0);
  return perLoop * node["Actual Loops"] + (node.Plans ?? []).reduce((n, child) => n + rowsHandled(child), 0);
}

describe("cohort progress query", () => {
  it("reads a fresh census in one pass, beside censuses the statistics already know", {
    timeout: 120_000,
  }, async () => {
    const source = await registerDatabase(actor, { name: "legacy", kind: "legacy", url: legacy.url });
    const shardIds: string[] = [];
    for (const [i, s] of shards.entries()) {
      shardIds.push((await registerDatabase(actor, { name: `shard-${i}`, kind: "shard", url: s.url })).id);
    }
    const newPlan = (name: string) =>
      createPlan(actor, {
        name,
        sourceDatabaseId: source.id,
        shardDatabaseIds: shardIds,
        shardKeyColumn: "tenant_id",
      });
    const earlier = await newPlan("earlier");
    const fresh = await newPlan("fresh");

    const store = new pg.Client({ connectionString: control.url });
    await store.connect();
    try {
      // An earlier plan's census, analysed (autovacuum does so within a minute); then a new plan's,
      // just written: the statistics have not seen its plan id yet.
      await seedCountedMovement(store, earlier.id);
      await store.query("analyze tenant_census; analyze backfill_task");
      await seedCountedMovement(store, fresh.id);

      // A plan gone wrong re-reads the census for minutes: stop it well before the test's timeout.
      await store.query("set statement_timeout = '30s'");
      const query = cohortProgressSql(fresh.id, LADDER);
      const { rows } = await store.query<{ "QUERY PLAN": [{ Plan: PlanNode }] }>(
        `explain (analyze, format json) ${query.text}`,
        query.values,
      );
      const root = rows[0]?.["QUERY PLAN"][0].Plan;
      if (!root) throw new Error("no plan");
      // One pass over the census (a few nodes each see every row); the self-join's nested loop
      // compared every census row with every other: hundreds of millions of rows.
      expect(rowsHandled(root)).toBeLessThan(40 * TENANTS * SHARDED_TABLES);
    } finally {
      await store.end();
    }

    // And the figures are right: every tenant in a cohort, each table copied up to its checkpoint.
    const view = await getCohortProgress(fresh.id);
    expect(view.cohorts.reduce((n, c) => n + c.tenants, 0)).toBe(TENANTS);
    const rowsTotal = view.cohorts.reduce((n, c) => n + c.rowsTotal, 0);
    expect(rowsTotal).toBe(TENANTS * SHARDED_TABLES * 10);
    expect(view.cohorts.reduce((n, c) => n + c.rowsCopied, 0)).toBe(SHARDED_TABLES * CHECKPOINT_TENANT * 10);
  });
});
