// Adversarial check of the shard-down rule (issue 13) on a real control plane: a gap in the
// probes (the worker down, restarted, or not probing the plan for a while) followed by ONE failed
// probe is not an outage as long as the gap. Before the fix the outage was measured from the last
// answer, so a single transient failure after a 10-minute gap tripped the breaker at once and
// rolled every tenant of the shard back.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PLAN_SETTINGS } from "../../schemas/plan";
import { systemActor } from "../../services/actor";
import { registerDatabase } from "../../services/databases/databases";
import { createPlan } from "../../services/plans/plans";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { loadMeasuredFacts } from "../gates/load-facts";
import { reachabilityMetric } from "../gates/shard-probe";
import { tripRules } from "../gates/trip-rules";
import { db } from "../store/db";
import { shardsFiring } from "./auto-trip";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
const actor = { ...systemActor("shard-down-gap", "operator@test"), role: "operator" as const };

beforeAll(async () => {
  control = await useControlPlane("sdg_control");
  legacy = await createTestDatabase("sdg_legacy");
  await legacy.pool.query("create table tenants (tenant_id bigint primary key)");
  shard = await createTestDatabase("sdg_shard");
}, 120_000);

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

describe("the shard-down rule after a gap in the probes", () => {
  it("one failed probe after a long gap does not trip; failing for longer than the limit does", {
    timeout: 60_000,
  }, async () => {
    const source = await registerDatabase(actor, { name: "legacy", kind: "legacy", url: legacy.url });
    const target = await registerDatabase(actor, { name: "shard", kind: "shard", url: shard.url });
    const plan = await createPlan(actor, {
      name: "gap",
      sourceDatabaseId: source.id,
      shardDatabaseIds: [target.id],
      shardKeyColumn: "tenant_id",
    });
    const { ordinal } = await db().planShard.findFirstOrThrow({ where: { planId: plan.id } });
    const name = reachabilityMetric(ordinal);
    const now = new Date();
    const ago = (ms: number) => new Date(now.getTime() - ms);
    // Answered every probe until 10 minutes ago; no probe since; the first one back failed.
    await db().metricSample.createMany({
      data: [
        { planId: plan.id, name, value: 1, at: ago(601_000) },
        { planId: plan.id, name, value: 1, at: ago(600_000) },
        { planId: plan.id, name, value: 0, at: ago(1_000) },
      ],
    });
    const settings = DEFAULT_PLAN_SETTINGS;
    const rule = async (at: Date) => {
      const facts = await loadMeasuredFacts(plan.id, settings, at);
      return {
        verdict: tripRules(facts, settings).find((r) => r.id === "shard-down")?.verdict,
        firing: shardsFiring("shard-down", facts, settings),
      };
    };
    expect(await rule(now)).toEqual({ verdict: "pass", firing: [] });

    // Still failing every probe for longer than the limit: that is an outage, and it trips.
    const later = new Date(now.getTime() + settings.breakerShardDownSeconds * 1000 + 5_000);
    await db().metricSample.createMany({
      data: [
        { planId: plan.id, name, value: 0, at: new Date(later.getTime() - 10_000) },
        { planId: plan.id, name, value: 0, at: new Date(later.getTime() - 1_000) },
      ],
    });
    expect(await rule(later)).toEqual({ verdict: "fail", firing: [ordinal] });
  });
});
