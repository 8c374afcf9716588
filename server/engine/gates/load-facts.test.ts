// The facts loader on a real control plane: lag samples both ways, parity (last checks, open
// differences per tenant, unverified tenants), fences and stray writes, the shard probe (a dropped
// shard database reads as down since its last answer), the SDK's counts and the breaker's trips —
// then the gates and trip rules judge what it read, as the engine and the on-demand API will.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PLAN_SETTINGS } from "../../schemas/plan";
import { systemActor } from "../../services/actor";
import { drawLadder } from "../../services/cohorts/cohorts";
import { evaluateCohortGates, evaluateTripRules } from "../../services/cohorts/gates";
import { registerDatabase } from "../../services/databases/databases";
import { createPlan } from "../../services/plans/plans";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { db } from "../store/db";
import { cohortGates } from "./cohort-gates";
import { loadCohortFacts, loadMeasuredFacts } from "./load-facts";
import { probeShards } from "./shard-probe";
import { startShardWatch } from "./shard-watch";
import { tripRules } from "./trip-rules";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
const actor = systemActor("facts-test", "engineer@test");

beforeAll(async () => {
  control = await useControlPlane("facts_control");
  legacy = await createTestDatabase("facts_legacy");
  await legacy.pool.query("create table tenants (tenant_id bigint primary key)");
  shards = [await createTestDatabase("facts_shard0"), await createTestDatabase("facts_shard1")];
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop().catch(() => {});
});

describe("measured facts", () => {
  it("reads what the engine recorded, and the gates and rules judge it", { timeout: 120_000 }, async () => {
    const source = await registerDatabase(actor, { name: "legacy", kind: "legacy", url: legacy.url });
    const shardIds: string[] = [];
    for (const [i, s] of (shards ?? []).entries()) {
      shardIds.push((await registerDatabase(actor, { name: `shard-${i}`, kind: "shard", url: s.url })).id);
    }
    const plan = await createPlan(actor, {
      name: "facts",
      sourceDatabaseId: source.id,
      shardDatabaseIds: shardIds,
      shardKeyColumn: "tenant_id",
    });
    const planId = plan.id;
    const now = new Date();
    const ago = (ms: number) => new Date(now.getTime() - ms);

    // Six minutes of lag, one sample a second: forward calm, reverse over 30 s for the last 90 s.
    const samples = [];
    for (let t = 360; t >= 0; t--) {
      samples.push({ planId, name: "cdc.lag_ms", value: 50, at: ago(t * 1000) });
      samples.push({ planId, name: "cdc.reverse_lag_ms", value: t <= 90 ? 45_000 : 80, at: ago(t * 1000) });
    }
    // An earlier movement's sample, older than every window: not read.
    samples.push({ planId, name: "cdc.lag_ms", value: 99_999, at: ago(3_600_000) });
    await db().metricSample.createMany({ data: samples });
    await db().dataMovement.create({
      data: {
        planId,
        status: "running",
        publicationName: "p",
        slotName: "s",
        sourceSchema: {},
        censusAt: now,
      },
    });
    await db().backfillTask.create({ data: { planId, tableName: "t", kind: "sharded", status: "done" } });
    await db().tenantCensus.createMany({
      data: ["a", "b", "c", "d"].map((tenantKey, i) => ({
        planId,
        tableName: "t",
        tenantKey,
        position: i,
        rows: BigInt((i + 1) * 10),
        rowsBefore: 0n,
      })),
    });
    // Tenant "a" on shard-0; a full check that could not verify "c"; an open difference of "a".
    await db().routingMap.create({ data: { planId, version: 1n, fenceInstalledAt: ago(600_000) } });
    await db().tenantRoute.create({
      data: {
        planId,
        tenantKey: "a",
        ownerDatabaseId: shardIds[0],
        version: 1n,
        updatedAt: ago(40 * 60_000),
      },
    });
    const full = await db().parityRun.create({
      data: {
        planId,
        kind: "full",
        status: "complete",
        finishedAt: ago(120_000),
        unverified: [{ table: "t", tenant: "c", shard: 1, rows: 30, reason: "shard down" }],
      },
    });
    await db().parityRun.create({
      data: { planId, kind: "recent", status: "complete", finishedAt: ago(10_000) },
    });
    await db().parityMismatch.create({
      data: {
        planId,
        runId: full.id,
        tableName: "t",
        tenantKey: "a",
        shardOrdinal: 0,
        rowKey: ["7"],
        kind: "changed",
      },
    });
    await db().strayWrite.create({
      data: {
        planId,
        databaseId: source.id,
        databaseName: "legacy",
        tenantKey: "a",
        reason: "not_owner",
        ticket: 1n,
        count: 2,
        observedAt: ago(20_000),
      },
    });
    // Tenant b's cutover froze it 40 s ago for a second: a router's write refused on legacy then is
    // the cutover's own (retried on the shard), not a stray.
    await db().tenantCutover.create({
      data: {
        planId,
        tenantKey: "b",
        direction: "to-shard",
        status: "done",
        requestedByEmail: "engineer@test",
        reason: "test",
        createdAt: ago(41_000),
        freezeStartedAt: ago(40_000),
        freezeEndedAt: ago(39_000),
        endedAt: ago(39_000),
      },
    });
    await db().strayWrite.create({
      data: {
        planId,
        databaseId: source.id,
        databaseName: "legacy",
        tenantKey: "b",
        reason: "frozen",
        ticket: 2n,
        count: 5,
        observedAt: ago(39_500),
      },
    });
    await db().metricSample.createMany({
      data: [
        { planId, name: "sdk.requests.0", value: 400, at: ago(30_000) },
        { planId, name: "sdk.requests.0", value: 600, at: ago(5_000) },
        { planId, name: "sdk.errors.0", value: 80, at: ago(5_000) },
        { planId, name: "sdk.requests.1", value: 100, at: ago(5_000) },
      ],
    });
    await db().engineEvent.create({
      data: { planId, level: "error", source: "breaker", message: "reverse lag", at: ago(100_000) },
    });

    // The probe: both shards answer; then shard-1's database is gone.
    expect((await probeShards(planId)).map((p) => p.reachable)).toEqual([true, true]);
    const answeredAt = (
      await db().metricSample.findFirstOrThrow({ where: { planId, name: "shard.reachable.1" } })
    ).at;
    await shards[1]?.drop();
    const second = await probeShards(planId, 2_000);
    expect(second.map((p) => p.reachable)).toEqual([true, false]);
    expect(second[1]?.error).toMatch(/does not exist/);

    const probedAt = new Date();
    const facts = await loadMeasuredFacts(planId, DEFAULT_PLAN_SETTINGS, probedAt);
    expect(facts.forwardLag.length).toBeGreaterThan(300);
    expect(Math.max(...facts.forwardLag.map((s) => s.value))).toBe(50);
    expect(facts.reverseLag.at(-1)?.value).toBe(45_000);
    expect(facts.forwardExpected).toBe(true);
    expect([...facts.onShard]).toEqual(["a"]);
    expect(facts.parity.lastFullAt).toEqual(ago(120_000));
    expect(facts.parity.lastCheckAt).toEqual(ago(10_000));
    expect([...facts.parity.openByTenant]).toEqual([["a", 1]]);
    expect([...facts.parity.unverifiedTenants]).toEqual(["c"]);
    expect(facts.fencesInstalledAt).toEqual(ago(600_000));
    expect(facts.strayWrites).toEqual([{ at: ago(20_000), database: "legacy", tenant: "a", count: 2 }]);
    expect(facts.strayWritesDuringCutovers).toBe(5);
    expect(facts.shards.map((s) => [s.name, s.reachable])).toEqual([
      ["shard-0", true],
      ["shard-1", false],
    ]);
    expect(facts.shards[1]?.lastReachableAt).toEqual(answeredAt);
    expect(facts.sdk.map((s) => [s.name, s.requests, s.errors])).toEqual([
      ["shard-0", 1_000, 80],
      ["shard-1", 100, 0],
    ]);
    expect(facts.trips).toEqual([{ at: ago(100_000), message: "reverse lag" }]);

    // The rules, on what was read: drift on a shard's tenant, reverse lag held high, strays, 8% errors.
    const rules = tripRules(facts, DEFAULT_PLAN_SETTINGS);
    expect(Object.fromEntries(rules.map((r) => [r.id, r.verdict]))).toEqual({
      "parity-drift": "fail",
      "forward-lag": "pass",
      "reverse-lag": "fail",
      // Down only since the second probe, seconds ago: under the 30 s limit.
      "shard-down": "pass",
      "stray-writes": "fail",
      "sdk-error-rate": "fail",
    });
    // Cohort facts from the drawn ladder: 4 tenants, so 1%, 5% and 25% all hold just "a" (the
    // smallest, 10 rows) and 100% holds everyone.
    await drawLadder(actor, { planId, redraw: false, policy: undefined });
    const first = await loadCohortFacts(planId, 1);
    expect(first).toEqual({ ordinal: 1, tenants: ["a"], previous: null });
    const second2 = await loadCohortFacts(planId, 4);
    expect(second2?.previous).toEqual({ ordinal: 3, tenants: 1, onShard: 1, lastFlipAt: ago(40 * 60_000) });
    expect([...(second2?.tenants ?? [])].sort()).toEqual(["a", "b", "c", "d"]);
    expect(await loadCohortFacts(planId, 9)).toBeNull();
    const gates = cohortGates(
      facts,
      second2 ?? first ?? { ordinal: 1, tenants: [], previous: null },
      DEFAULT_PLAN_SETTINGS,
      rules,
    );
    expect(Object.fromEntries(gates.map((g) => [g.id, g.verdict]))).toEqual({
      "forward-lag": "pass",
      "reverse-lag": "fail",
      parity: "fail",
      soak: "pass",
      breaker: "fail",
      "stray-writes": "fail",
    });

    // On demand, through the services: the same verdicts, each with a link to its evidence.
    const onDemand = await evaluateCohortGates(planId, 4);
    expect(onDemand.open).toBe(false);
    expect(onDemand.gates.find((g) => g.id === "parity")?.href).toMatch(
      new RegExp(`^/plans/${planId}/parity\\?chart=parity&from=`),
    );
    const trips = await evaluateTripRules(planId);
    expect(trips.tripping).toEqual(expect.arrayContaining(["parity-drift", "reverse-lag"]));
    await expect(evaluateCohortGates(planId, 7)).rejects.toThrow(/no cohort 7/);

    // The worker's watch keeps probing while the movement runs: new samples appear (polled, with a deadline).
    const before = await db().metricSample.count({ where: { planId, name: "shard.reachable.0" } });
    const watch = startShardWatch({ intervalMs: 300, log: () => {} });
    try {
      const deadline = Date.now() + 20_000;
      while ((await db().metricSample.count({ where: { planId, name: "shard.reachable.0" } })) === before) {
        if (Date.now() > deadline) throw new Error("the shard watch recorded no probe within 20 s");
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await watch.stop();
    }
  });
});
