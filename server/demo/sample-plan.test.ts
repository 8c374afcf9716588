// The demo's sample plan: created once through the services (audited as `demo-setup`), moving data
// into the demo's shards as the real worker runs it, and left alone by a re-run of the demo.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../db";
import { systemActor } from "../services/actor";
import { registerDatabase } from "../services/databases/databases";
import { useControlPlane } from "../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../testing/databases";
import { waitFor } from "../testing/worker-process";
import { startWorker, type Worker } from "../worker";
import { loadDemoDataset } from "./dataset";
import { ensureSamplePlan, nextSampleStep, SAMPLE_PLAN_NAME, type SampleFacts } from "./sample-plan";

describe("nextSampleStep", () => {
  const sample = (phase: string, movementStatus: string | null = null, status = "active") =>
    ({ phase, status, movementStatus }) as SampleFacts["sample"];

  it("creates the sample only on a control plane without plans", () => {
    expect(nextSampleStep({ sample: null, otherPlans: 0 })).toEqual({ kind: "create" });
    expect(nextSampleStep({ sample: null, otherPlans: 2 })).toMatchObject({
      kind: "skip",
      why: "the control plane already has 2 plans",
    });
  });

  it("finishes a set-up a crash interrupted: advance to Two-way CDC, then start", () => {
    expect(nextSampleStep({ sample: sample("define_key"), otherPlans: 0 }).kind).toBe("advance");
    expect(nextSampleStep({ sample: sample("application_router"), otherPlans: 3 }).kind).toBe("advance");
    expect(nextSampleStep({ sample: sample("two_way_cdc"), otherPlans: 0 }).kind).toBe("start");
  });

  it("leaves a sample that has moved data, or that people changed, as it is", () => {
    for (const status of ["running", "paused", "cancelled", "failed"]) {
      expect(nextSampleStep({ sample: sample("two_way_cdc", status), otherPlans: 0 })).toEqual({
        kind: "keep",
        why: `its data movement is ${status}`,
      });
    }
    expect(nextSampleStep({ sample: sample("define_key", null, "archived"), otherPlans: 0 }).kind).toBe(
      "keep",
    );
    expect(nextSampleStep({ sample: sample("async_backfill"), otherPlans: 0 }).kind).toBe("keep");
  });
});

describe("the demo's sample plan on real databases", () => {
  let control: Awaited<ReturnType<typeof useControlPlane>>;
  let legacy: TestDatabase;
  const shards: TestDatabase[] = [];
  let worker: Worker | undefined;
  const actor = systemActor("demo-setup", "demo-setup");
  const topology = { legacyName: "legacy", shardNames: ["shard-1", "shard-2"] };

  beforeAll(async () => {
    control = await useControlPlane("sample_control");
    legacy = await createTestDatabase("sample_legacy");
    for (let i = 0; i < 2; i++) shards.push(await createTestDatabase(`sample_shard${i + 1}`));
    await loadDemoDataset(legacy.pool, { tenants: 40, rows: 4_000 });
    await registerDatabase(actor, { name: "legacy", kind: "legacy", url: legacy.url });
    for (const [i, shard] of shards.entries()) {
      await registerDatabase(actor, { name: `shard-${i + 1}`, kind: "shard", url: shard.url });
    }
  });

  afterAll(async () => {
    await worker?.stop();
    await control?.drop();
    await legacy?.drop();
    for (const shard of shards) await shard.drop();
  });

  it("is created through the services, audited, and moves data into the shards", {
    timeout: 120_000,
  }, async () => {
    const outcome = await ensureSamplePlan(actor, topology);
    expect(outcome.summary).toBe("created; backfill and CDC into shard-1, shard-2 started");
    const plan = await db().plan.findUniqueOrThrow({
      where: { name: SAMPLE_PLAN_NAME },
      include: { movement: true, shards: { include: { database: true } } },
    });
    expect(outcome.planId).toBe(plan.id);
    expect(plan.phase).toBe("two_way_cdc");
    expect(plan.movement?.status).toBe("running");
    expect(plan.shards.map((s) => s.database.name).sort()).toEqual(["shard-1", "shard-2"]);

    const audit = await db().auditEvent.findMany({ where: { planId: plan.id }, orderBy: { seq: "asc" } });
    expect(audit.map((e) => e.action)).toEqual([
      "plan.create",
      "plan.advance",
      "plan.advance",
      "movement.start",
    ]);
    expect(new Set(audit.map((e) => `${e.actorEmail}/${e.role}`))).toEqual(new Set(["demo-setup/system"]));

    // The real worker takes it from there: rows arrive on the shards and the CDC stream confirms.
    worker = await startWorker(control.url, { log: () => {} });
    await waitFor(
      "the sample plan's backfill to copy rows",
      async () => {
        const tasks = await db().backfillTask.findMany({ where: { planId: plan.id } });
        return tasks.reduce((sum, t) => sum + Number(t.rowsCopied), 0) > 0;
      },
      90_000,
    );
    await waitFor("rows on the shards", async () => {
      const counts = await Promise.all(
        shards.map(async (s) => {
          const { rows } = await s.pool.query<{ n: string }>(
            "select (select count(*) from tenants) + (select count(*) from tasks) + (select count(*) from events) as n",
          );
          return Number(rows[0]?.n ?? 0);
        }),
      );
      return counts.reduce((a, b) => a + b, 0) > 0;
    });
    await waitFor(
      "the sample plan's CDC stream to confirm a position",
      async () => {
        await legacy.pool.query(
          "update tenants set name = name where tenant_id = (select min(tenant_id) from tenants)",
        );
        return (await db().dataMovement.findUnique({ where: { planId: plan.id } }))?.confirmedLsn;
      },
      90_000,
    );
  });

  it("a re-run of the demo keeps the one sample plan and changes nothing", async () => {
    // The worker audits its own work meanwhile; the demo's set-up must add nothing.
    const bySetup = { where: { actorEmail: "demo-setup" } };
    const auditBefore = await db().auditEvent.count(bySetup);
    const outcome = await ensureSamplePlan(actor, topology);
    expect(outcome.summary).toMatch(/^kept as it was \(its data movement is (running|paused|failed)\)$/);
    expect(await db().plan.count()).toBe(1);
    expect(await db().auditEvent.count(bySetup)).toBe(auditBefore);
  });
});
