// Concurrent operators against one plan's data movement, on real servers: concurrent starts run
// once, concurrent pause/cancel/resume have exactly one winner per real change, and the backfill
// rate and the settings form never overwrite each other — each time with one audit event per real
// change and a stored state that matches the audit log.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import type { SourceSchema } from "../../engine/analysis/introspect";
import { claimStart } from "../../engine/store/start-claim";
import { DEFAULT_PLAN_SETTINGS, type TPlanSettings } from "../../schemas/plan";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { createCaller } from "../../trpc/root";
import { systemActor } from "../actor";
import { registerDatabase } from "../databases/databases";
import { createPlan, getPlan, transitionPlan, updatePlanSettings } from "../plans/plans";
import { finishCancel, setBackfillRate } from "./movement";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
const actor = systemActor("races-setup", "engineer@test");
let sourceId = "";
let shardId = "";

/** A plan in the "Two-way CDC" phase, where data movement starts. */
async function planAtTwoWayCdc(name: string) {
  let plan = await createPlan(actor, {
    name,
    sourceDatabaseId: sourceId,
    shardDatabaseIds: [shardId],
    shardKeyColumn: "tenant_id",
  });
  for (const reason of ["key analysed", "router deployed"]) {
    plan = await transitionPlan(actor, {
      planId: plan.id,
      expectedVersion: plan.version,
      event: "advance",
      reason,
    });
  }
  return plan;
}

/** An operator's API client, as the browser's requests reach the server. */
function operator(requestId: string) {
  return createCaller({
    user: { id: "operator-1", email: "operator@test", name: "Oskar Operator", role: "operator" },
    requestId,
  });
}

type Outcome = { ok: true } | { ok: false; code: string; message: string };
async function settle(calls: Promise<unknown>[]): Promise<Outcome[]> {
  return (await Promise.allSettled(calls)).map((r) =>
    r.status === "fulfilled"
      ? { ok: true }
      : { ok: false, code: (r.reason as { code: string }).code, message: (r.reason as Error).message },
  );
}

async function auditOf(planId: string, actionPrefix: string) {
  const events = await db().auditEvent.findMany({
    where: { planId, action: { startsWith: actionPrefix } },
    orderBy: { seq: "asc" },
  });
  return events.map((e) => ({
    action: e.action,
    before: e.before as Record<string, unknown> | null,
    after: e.after as Record<string, unknown>,
  }));
}

async function movementStatus(planId: string) {
  return (await db().dataMovement.findUniqueOrThrow({ where: { planId } })).status;
}

async function slotsNamed(slotName: string) {
  const { rows } = await legacy.pool.query<{ n: number }>(
    "select count(*)::int as n from pg_replication_slots where slot_name = $1",
    [slotName],
  );
  return rows[0]?.n ?? 0;
}

beforeAll(async () => {
  control = await useControlPlane("races_control");
  legacy = await createTestDatabase("races_legacy");
  shard = await createTestDatabase("races_shard");
  await loadDemoDataset(legacy.pool, { tenants: 40, rows: 2_000, seed: 7 });
  sourceId = (await registerDatabase(actor, { name: "legacy", kind: "legacy", url: legacy.url })).id;
  shardId = (await registerDatabase(actor, { name: "shard-0", kind: "shard", url: shard.url })).id;
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

describe("data movement under concurrent operators", () => {
  let planId = "";
  let slotName = "";

  it("ten concurrent starts: one starts, nine are refused; one audit event, one slot", async () => {
    const plan = await planAtTwoWayCdc("races");
    planId = plan.id;
    const outcomes = await settle(
      Array.from({ length: 10 }, (_, i) =>
        operator(`start-${i}`).movement.start({ planId, reason: "start it", resetShards: false }),
      ),
    );
    const won = outcomes.filter((o) => o.ok);
    const refused = outcomes.filter((o): o is Extract<Outcome, { ok: false }> => !o.ok);
    expect(won).toHaveLength(1);
    expect(refused).toHaveLength(9);
    for (const r of refused) {
      expect(r.code).toBe("CONFLICT");
      expect(r.message).toMatch(/already (running|being started)|being started right now/);
    }
    expect((await auditOf(planId, "movement.start")).length).toBe(1);
    const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId } });
    expect(movement.status).toBe("running");
    slotName = movement.slotName;
    expect(await slotsNamed(slotName)).toBe(1);
    const tables = (movement.sourceSchema as { tables: unknown[] }).tables.length;
    expect(await db().backfillTask.count({ where: { planId } })).toBe(tables);

    // A client retrying after its success is refused too, and changes nothing.
    const retry = await settle([operator("retry").movement.start({ planId, reason: "again" })]);
    expect(retry[0]).toMatchObject({ ok: false, code: "CONFLICT" });
    expect((retry[0] as { message: string }).message).toMatch(/already running: it runs once/);
    expect((await auditOf(planId, "movement.start")).length).toBe(1);
    expect((await db().dataMovement.findUniqueOrThrow({ where: { planId } })).startedAt.getTime()).toBe(
      movement.startedAt.getTime(),
    );
  });

  it("twenty concurrent pauses: one pauses, nineteen are told it is already paused", async () => {
    const outcomes = await settle(
      Array.from({ length: 20 }, (_, i) =>
        operator(`pause-${i}`).movement.control({ planId, action: "pause", reason: "calm down" }),
      ),
    );
    expect(outcomes.filter((o) => o.ok)).toHaveLength(1);
    for (const o of outcomes.filter((o) => !o.ok)) {
      expect(o).toMatchObject({ code: "CONFLICT", message: "The data movement is already paused." });
    }
    expect(await auditOf(planId, "movement.pause")).toEqual([
      { action: "movement.pause", before: { status: "running" }, after: { status: "paused" } },
    ]);
    expect(await movementStatus(planId)).toBe("paused");

    const resumes = await settle(
      Array.from({ length: 20 }, (_, i) =>
        operator(`resume-${i}`).movement.control({ planId, action: "resume", reason: "go on" }),
      ),
    );
    expect(resumes.filter((o) => o.ok)).toHaveLength(1);
    expect((await auditOf(planId, "movement.resume")).length).toBe(1);
    expect(await movementStatus(planId)).toBe("running");
  });

  it("a cancel sent with pauses and resumes is never lost; the audit log replays to the final state", async () => {
    const before = (await auditOf(planId, "movement.")).length;
    const actions = ["pause", "pause", "cancel", "resume", "pause", "resume", "pause", "pause"] as const;
    const outcomes = await settle(
      actions.map((action, i) =>
        operator(`mixed-${i}`).movement.control({ planId, action, reason: "mixed" }),
      ),
    );
    const cancelOutcome = outcomes[actions.indexOf("cancel")];
    expect(cancelOutcome).toEqual({ ok: true });
    for (const o of outcomes.filter((o) => !o.ok)) expect(o).toMatchObject({ code: "CONFLICT" });

    const changes = (await auditOf(planId, "movement.")).slice(before);
    expect(changes.length).toBe(outcomes.filter((o) => o.ok).length);
    // Each change starts where the one before it ended: no two acted on the same status.
    let status = "running";
    for (const change of changes) {
      expect(change.before).toEqual({ status });
      status = String(change.after.status);
    }
    expect(status).toBe("cancelling");
    expect(await movementStatus(planId)).toBe("cancelling");
    const late = await settle([
      operator("late").movement.control({ planId, action: "pause", reason: "late pause" }),
    ]);
    expect(late[0]).toMatchObject({ ok: false, code: "CONFLICT", message: /already cancelling/ });

    // The supervisor's part of the cancel: the slot goes, and the movement ends cancelled.
    await finishCancel(planId);
    expect(await movementStatus(planId)).toBe("cancelled");
    expect(await slotsNamed(slotName)).toBe(0);
  });
  it("a start interrupted after its claim (a crash) can be cancelled, then started again", async () => {
    const stored = await db().dataMovement.findUniqueOrThrow({ where: { planId } });
    // What a start leaves behind if its process dies right after claiming the movement.
    await claimStart(
      planId,
      { slotName: stored.slotName, publicationName: stored.publicationName },
      stored.sourceSchema as unknown as SourceSchema,
      () => true,
    );
    const refused = await settle([operator("again").movement.start({ planId, reason: "start again" })]);
    expect(refused[0]).toMatchObject({
      ok: false,
      code: "CONFLICT",
      message: /being started right now.*cancel/,
    });

    await operator("unstick").movement.control({ planId, action: "cancel", reason: "the start died" });
    await finishCancel(planId);
    expect(await movementStatus(planId)).toBe("cancelled");

    await operator("restart").movement.start({ planId, reason: "start again" });
    expect(await movementStatus(planId)).toBe("running");
    expect(await slotsNamed(slotName)).toBe(1);
    await operator("done").movement.control({ planId, action: "cancel", reason: "test over" });
    await finishCancel(planId);
    expect(await slotsNamed(slotName)).toBe(0);
  });
});

describe("the backfill rate and the settings form", () => {
  type Replayed = TPlanSettings;

  it("ten rounds of a rate change beside a settings edit: stored settings always equal the audit's", async () => {
    const plan = await planAtTwoWayCdc("rate races");
    for (let round = 0; round < 10; round++) {
      const current = await getPlan(plan.id);
      await settle([
        setBackfillRate(actor, { planId: plan.id, rowsPerSecond: 1_000 + round, reason: "throttle" }),
        updatePlanSettings(actor, {
          planId: plan.id,
          expectedVersion: current.version,
          settings: { ...current.settings, cdcLagThresholdMs: 6_000 + round, gateSoakMinutes: round },
          reason: "tune gates",
        }),
        setBackfillRate(actor, { planId: plan.id, rowsPerSecond: 2_000 + round, reason: "throttle" }),
      ]);

      // Replay every audited change from the plan's creation; each one's "before" must be what the
      // replay holds at that point, and the end must be what is stored.
      const events = await db().auditEvent.findMany({ where: { planId: plan.id }, orderBy: { seq: "asc" } });
      let replayed: Replayed | null = null;
      for (const e of events) {
        const after = e.after as Record<string, unknown>;
        if (e.action === "plan.create") replayed = after.settings as Replayed;
        if (!replayed) continue;
        if (e.action === "plan.settings.update") {
          expect(e.before, `round ${round}, event ${e.seq}`).toEqual(replayed);
          replayed = after as Replayed;
        }
        if (e.action === "movement.rate") {
          expect((e.before as Record<string, unknown>).backfillRowsPerSecond).toBe(
            replayed.backfillRowsPerSecond,
          );
          replayed = { ...replayed, backfillRowsPerSecond: after.backfillRowsPerSecond as number };
        }
      }
      expect((await getPlan(plan.id)).settings, `round ${round}`).toEqual(replayed);
    }
    // Two rate changes per round always apply (they touch only their field).
    expect((await auditOf(plan.id, "movement.rate")).length).toBe(20);
  });

  it("an archived plan's rate cannot change, like its settings", async () => {
    let plan = await createPlan(actor, {
      name: "archived rate",
      sourceDatabaseId: sourceId,
      shardDatabaseIds: [shardId],
      shardKeyColumn: "tenant_id",
    });
    plan = await transitionPlan(actor, {
      planId: plan.id,
      expectedVersion: plan.version,
      event: "archive",
      reason: "superseded",
    });
    const refused = await settle([
      operator("archived").movement.setRate({ planId: plan.id, rowsPerSecond: 500, reason: "slower" }),
    ]);
    expect(refused[0]).toMatchObject({ ok: false, code: "PRECONDITION_FAILED", message: /archived/ });
    const after = await getPlan(plan.id);
    expect(after.settings.backfillRowsPerSecond).toBe(DEFAULT_PLAN_SETTINGS.backfillRowsPerSecond);
    expect(after.version).toBe(plan.version);
    expect(await auditOf(plan.id, "movement.rate")).toEqual([]);
  });
});
