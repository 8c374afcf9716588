// The plan figures on a real control plane: copy rates only while a table copies, a lag from the
// current movement only, the same figures for the plan pages and the fleet list, and chart markers
// from the audit log.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { db } from "../../db";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import type { Actor } from "../actor";
import { controlDataMovement, setBackfillRate } from "../movement/movement";
import { getPlanFigures } from "./figures";
import { listFleet } from "./fleet";
import { chartMarkers, markerLabel } from "./markers";

const operator: Actor = { id: null, email: "operator@test", role: "admin", requestId: "figures-test" };
let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
let planId: string;
const NOW = Date.now();
const ago = (ms: number) => new Date(NOW - ms);

async function sample(name: string, value: number, msAgo: number) {
  await db().metricSample.create({ data: { planId, name, value, at: ago(msAgo) } });
}

beforeAll(async () => {
  control = await useControlPlane("figures");
  legacy = await createTestDatabase("figures_legacy");
  shard = await createTestDatabase("figures_shard");
  await legacy.pool.query(
    "create table orders (tenant_id bigint not null, id bigint, primary key (tenant_id, id))",
  );
  planId = (await planAtTwoWayCdc(operator, "Figures", legacy.url, [shard.url])).id;
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

beforeEach(async () => {
  await db().metricSample.deleteMany({ where: { planId } });
  await db().tenantRoute.deleteMany({ where: { planId } });
  await db().strayWrite.deleteMany({ where: { planId } });
  await db().backfillTask.deleteMany({ where: { planId } });
  await db().dataMovement.deleteMany({ where: { planId } });
  // A movement started a minute ago: orders copying, tenants done, audit_log not begun.
  await db().dataMovement.create({
    data: {
      planId,
      status: "running",
      slotName: "s",
      publicationName: "p",
      sourceSchema: {},
      startedAt: ago(60_000),
    },
  });
  await db().backfillTask.createMany({
    data: [
      {
        planId,
        tableName: '"public"."orders"',
        kind: "sharded",
        status: "running",
        rowsCopied: 40_000n,
        rowsTotal: 100_000n,
      },
      {
        planId,
        tableName: '"public"."tenants"',
        kind: "sharded",
        status: "done",
        rowsCopied: 2_000n,
        rowsTotal: 1_900n,
      },
      {
        planId,
        tableName: '"public"."audit_log"',
        kind: "sharded",
        status: "pending",
        rowsCopied: 0n,
        rowsTotal: 8_000n,
      },
    ],
  });
  for (let i = 0; i < 20; i++)
    await sample('backfill.rows_per_s:"public"."orders"', 1_000, 42_000 - i * 2_000);
  // tenants finished 30 s ago at a high rate (its last sample, written when it was done, is 0).
  await sample('backfill.rows_per_s:"public"."tenants"', 5_000, 32_000);
  await sample('backfill.rows_per_s:"public"."tenants"', 0, 30_000);
});

describe("copy rates and ETAs", () => {
  it("has a rate and an ETA only for the table copying now, and a smoothed rate for the plan", async () => {
    const f = await getPlanFigures(planId, new Date(NOW));
    const [orders, tenants, auditLog] = f.backfill.tasks;
    expect(orders?.rowsPerSecond).toBeCloseTo(1_000);
    expect(orders?.eta?.likely).toBeCloseTo(60);
    expect(orders?.eta?.text).toMatch(/^about 60 s/);
    expect(tenants?.rowsPerSecond).toBeNull();
    expect(tenants?.eta).toBeNull();
    expect(auditLog?.rowsPerSecond).toBeNull();
    // tenants' 5,000 rows/s half a minute ago still weighs a little in the plan's rate.
    expect(f.backfill.rowsPerSecond).toBeGreaterThan(1_000);
    expect(f.backfill.rowsPerSecond).toBeLessThan(1_500);
    // 40,000 + 2,000 of 100,000 + 2,000 (a done table counts what it copied) + 8,000.
    expect(f.backfill.rowsCopied).toBe(42_000);
    expect(f.backfill.rowsTotal).toBe(110_000);
    expect(f.backfill.eta?.likely).toBeGreaterThan(68_000 / 1_500);
    expect(f.backfill.eta?.likely).toBeLessThan(68);
    expect(f.progress).toMatchObject({ stage: "backfill", fraction: 42_000 / 110_000 });
  });

  it("clears every rate and ETA while the movement is paused", async () => {
    await db().dataMovement.update({ where: { planId }, data: { status: "paused" } });
    const f = await getPlanFigures(planId, new Date(NOW));
    expect(f.backfill.tasks.map((t) => t.rowsPerSecond)).toEqual([null, null, null]);
    expect(f.backfill.rowsPerSecond).toBeNull();
    expect(f.backfill.eta).toBeNull();
  });

  it("clears a table's rate when its samples stop (a stalled or killed copier)", async () => {
    const f = await getPlanFigures(planId, new Date(NOW + 15_000));
    expect(f.backfill.tasks[0]?.rowsPerSecond).toBeNull();
    expect(f.backfill.rowsPerSecond).toBeNull();
  });

  it("says done, with no rate, once every table is", async () => {
    await db().backfillTask.updateMany({ where: { planId }, data: { status: "done" } });
    const f = await getPlanFigures(planId, new Date(NOW));
    expect(f.backfill.done).toBe(true);
    expect(f.backfill.rowsPerSecond).toBeNull();
    expect(f.backfill.eta).toBeNull();
    expect(f.progress.stage).toBe("cutover");
  });
});

describe("forward CDC lag", () => {
  it("is the newest sample of the current movement, with its time", async () => {
    await sample("cdc.lag_ms", 213, 120_000); // an earlier movement's
    expect((await getPlanFigures(planId, new Date(NOW))).lag).toEqual({ state: "waiting" });
    await sample("cdc.lag_ms", 9, 3_000);
    await sample("cdc.lag_ms", 4, 1_000);
    expect((await getPlanFigures(planId, new Date(NOW))).lag).toEqual({
      state: "measured",
      ms: 4,
      at: ago(1_000),
      fresh: true,
    });
    expect((await getPlanFigures(planId, new Date(NOW + 20_000))).lag).toMatchObject({ ms: 4, fresh: false });
  });

  it("is not shown for a stream that does not run", async () => {
    await sample("cdc.lag_ms", 4, 1_000);
    await db().dataMovement.update({ where: { planId }, data: { status: "cancelled" } });
    expect((await getPlanFigures(planId, new Date(NOW))).lag).toEqual({ state: "not_streaming" });
    await db().dataMovement.update({
      where: { planId },
      data: { status: "failed", lastError: "shard down" },
    });
    expect((await getPlanFigures(planId, new Date(NOW))).lag).toEqual({
      state: "stopped",
      error: "shard down",
    });
  });

  it("is the same figure in the fleet list as on the plan's pages", async () => {
    await sample("cdc.lag_ms", 7, 500);
    const fleet = await listFleet();
    const row = fleet.find((p) => p.id === planId);
    const own = await getPlanFigures(planId);
    expect(row?.figures.lag).toEqual(own.lag);
    expect(row?.figures.backfill.rowsCopied).toBe(own.backfill.rowsCopied);
    expect(row?.figures.parity).toEqual(own.parity);
    expect(row?.figures.breaker).toEqual(own.breaker);
    expect(own.breaker).toEqual({
      state: "armed",
      trippedAt: null,
      trippedBy: null,
      reason: null,
      error: null,
    });
    expect(row?.figures.tenants.onShards).toBe(0);
  });
});

describe("reverse CDC lag, tenants on shards and stray writes", () => {
  async function ownedByShard(tenantKey: string) {
    const shardId = (await db().planShard.findFirstOrThrow({ where: { planId } })).databaseId;
    await db().tenantRoute.create({ data: { planId, tenantKey, ownerDatabaseId: shardId, version: 1n } });
  }

  it("says no tenant is on a shard, whatever the samples, until one is", async () => {
    await sample("cdc.reverse_lag_ms", 12, 1_000);
    // A tenant that came back to legacy keeps its route row (owner null): still none on shards.
    await db().tenantRoute.create({ data: { planId, tenantKey: "7", ownerDatabaseId: null, version: 2n } });
    const f = await getPlanFigures(planId, new Date(NOW));
    expect(f.reverseLag).toEqual({ state: "none_on_shards" });
    expect(f.tenants.onShards).toBe(0);
  });

  it("is the newest sample of the current movement once a tenant is on a shard", async () => {
    await ownedByShard("42");
    await sample("cdc.reverse_lag_ms", 500, 120_000); // before this movement started
    expect((await getPlanFigures(planId, new Date(NOW))).reverseLag).toEqual({ state: "waiting" });
    await sample("cdc.reverse_lag_ms", 30, 2_000);
    await sample("cdc.lag_ms", 9, 1_000); // forward's metric is not reverse's
    const f = await getPlanFigures(planId, new Date(NOW));
    expect(f.reverseLag).toEqual({ state: "measured", ms: 30, at: ago(2_000), fresh: true });
    expect(f.lag).toMatchObject({ state: "measured", ms: 9 });
    expect(f.tenants.onShards).toBe(1);
    expect((await getPlanFigures(planId, new Date(NOW + 20_000))).reverseLag).toMatchObject({
      ms: 30,
      fresh: false,
    });
  });

  it("counts the stray writes the fences refused, and those to a database not the owner", async () => {
    expect((await getPlanFigures(planId, new Date(NOW))).strayWrites).toEqual({ total: 0, notOwner: 0 });
    const database = await db().planShard.findFirstOrThrow({ where: { planId } });
    await db().strayWrite.createMany({
      data: [
        {
          planId,
          databaseId: database.databaseId,
          databaseName: "legacy",
          tenantKey: "42",
          reason: "not_owner",
          ticket: 1n,
          count: 3,
        },
        {
          planId,
          databaseId: database.databaseId,
          databaseName: "legacy",
          tenantKey: "42",
          reason: "frozen",
          ticket: 2n,
          count: 2,
        },
      ],
    });
    const f = await getPlanFigures(planId, new Date(NOW));
    expect(f.strayWrites).toEqual({ total: 5, notOwner: 3 });
    const row = (await listFleet()).find((p) => p.id === planId);
    expect(row?.figures.strayWrites).toEqual(f.strayWrites);
  });
});

describe("chart markers", () => {
  it("marks pause, resume and rate changes from the audit log, oldest first", async () => {
    await controlDataMovement(operator, { planId, action: "pause", reason: "peak traffic" });
    await setBackfillRate(operator, { planId, rowsPerSecond: 20_000, reason: "quiet now" });
    await controlDataMovement(operator, { planId, action: "resume", reason: "traffic down" });
    const markers = await chartMarkers(planId, 60);
    expect(markers.map((m) => m.label)).toEqual(["Paused", "Rate 20,000 rows/s", "Resumed"]);
    expect(markers[0]?.detail).toBe("Paused by operator@test: peak traffic");
    expect(markers[0]?.t).toBeLessThanOrEqual(markers[2]?.t ?? 0);
  });

  it("marks a cutover request with its tenant and target", () => {
    const after = { tenant: "42", direction: "to-shard", from: "legacy", to: "shard-2", budgetMs: 2_000 };
    expect(markerLabel("routing.cutover.request", after)).toBe("Cutover 42 → shard-2");
  });
});
