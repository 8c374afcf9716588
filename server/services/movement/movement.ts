// Starting and steering a plan's data movement (backfill + forward CDC). Operators only; every
// change audited. The start protocol itself (introspect, prepare the shards, slot, tasks) is engine
// code (server/engine/runtime/start-movement.ts); this service authorizes, validates the plan,
// identifies its databases and audits. The engine runs in worker processes
// (server/engine/runtime/supervisor.ts), which read the state written here.

import { db } from "../../db";
import {
  introspectForStart,
  replicationNames,
  type StartHooks,
  startMovement,
} from "../../engine/runtime/start-movement";
import { NOTIFY_ENGINE_SQL } from "../../engine/runtime/wake";
import { type MovementStatus, nextMovementStatus } from "../../engine/state/movement";
import { transitionMovement } from "../../engine/state/movement-transition";
import { countActiveCopiers } from "../../engine/store/active-copiers";
import { AppError, withoutInternals } from "../../errors";
import type { TControlMovementInput, TSetRateInput } from "../../schemas/movement";
import type { Actor } from "../actor";
import { appendAuditEvent } from "../audit/audit-log";
import {
  assertConnectedTo,
  assertNoOtherMovementOnSameDatabases,
  checkPlanDatabases,
} from "../databases/plan-databases";
import { assertMayCancel, lockPlanForControl } from "./cancel-guard";

export { replicationNames };

const MOVEMENT_PHASES = new Set([
  "two_way_cdc",
  "async_backfill",
  "bit_by_bit_routing",
  "automated_parity",
  "live_rollback",
]);

export async function startDataMovement(
  actor: Actor,
  input: { planId: string; reason: string; resetShards?: boolean },
) {
  const plan = await db().plan.findUnique({
    where: { id: input.planId },
    include: {
      shards: { orderBy: { ordinal: "asc" }, include: { database: true } },
      sourceDatabase: true,
      movement: true,
    },
  });
  if (!plan) throw new AppError("NOT_FOUND", "No such plan.");
  if (plan.status === "archived") throw new AppError("PRECONDITION_FAILED", "The plan is archived.");
  if (!MOVEMENT_PHASES.has(plan.phase)) {
    throw new AppError(
      "PRECONDITION_FAILED",
      "Data movement starts in the “Two-way CDC” phase: advance the plan there first (after the key analysis and the router).",
    );
  }
  if (plan.movement) {
    const outcome = nextMovementStatus(plan.movement.status as MovementStatus, "start");
    if (!outcome.ok) throw new AppError("CONFLICT", outcome.reason);
  }

  // 1. introspect (reads only: harmless before the claim)
  const schema = await introspectForStart(plan.sourceDatabase, plan.shardKeyColumn);

  // 2. the databases are who they say they are, and no other movement uses any of them — compared by
  //    what the servers report, not by registration ids (plan-databases.ts)
  const databases = await checkPlanDatabases(
    actor,
    plan.sourceDatabase,
    plan.shards.map((s) => s.database),
    "Nothing was started.",
  );
  await assertNoOtherMovementOnSameDatabases(plan.id, databases);

  // 3–6. the engine's start protocol, audited in the transaction that records it
  const shardRows = plan.shards.map((s, i) => databases.shards[i] ?? s.database);
  const hooks: StartHooks = {
    assertConnectedTo: (client, target) => {
      const row = target.role === "shard" ? shardRows[target.index] : databases.source;
      if (!row) throw new Error("the plan has no such shard");
      return assertConnectedTo(client, row, "Nothing was started.");
    },
    recordStart: (tx, started) =>
      appendAuditEvent(tx, {
        actor,
        action: "movement.start",
        target: { type: "plan", id: plan.id },
        planId: plan.id,
        after: {
          tables: started.tables,
          sharded: started.sharded,
          shards: plan.shards.map((s) => s.database.name),
          slot: started.slotName,
          slotLsn: started.slotLsn,
          resetShards: Boolean(input.resetShards),
        },
        reason: input.reason,
      }),
  };
  await startMovement(
    {
      planId: plan.id,
      source: plan.sourceDatabase,
      shards: plan.shards.map((s) => s.database),
      schema,
      resetShards: Boolean(input.resetShards),
      isMovementPhase: (phase) => MOVEMENT_PHASES.has(phase),
    },
    hooks,
  );
  return getMovementStatus(plan.id);
}

export async function controlDataMovement(actor: Actor, input: TControlMovementInput) {
  await db().$transaction(async (tx) => {
    // The plan row first, then the movement's (movement-transition.ts): controls of one plan take
    // turns, a cancel is refused once tenants may depend on replication (cancel-guard.ts), of
    // concurrent pauses only the first pauses, and a cancel is never overwritten by a pause that read
    // "running" before it.
    const phase = await lockPlanForControl(tx, input.planId);
    if (input.action === "cancel") await assertMayCancel(tx, input.planId, phase);
    const outcome = await transitionMovement(tx, input.planId, input.action, { data: { lastError: null } });
    if (!outcome.ok) {
      throw new AppError(outcome.status ? "CONFLICT" : "PRECONDITION_FAILED", outcome.reason);
    }
    await appendAuditEvent(tx, {
      actor,
      action: `movement.${input.action}`,
      target: { type: "plan", id: input.planId },
      planId: input.planId,
      before: { status: outcome.from },
      after: { status: outcome.to },
      reason: input.reason,
    });
    await tx.$executeRawUnsafe(NOTIFY_ENGINE_SQL, input.planId);
  });
  return getMovementStatus(input.planId);
}

/**
 * Changes the plan's backfill rate limit; running slices pick it up within a second. Only that one
 * field is written, in SQL, under the plan's row lock: rewriting the whole settings object from an
 * earlier read lost concurrent settings edits that the audit log said were applied.
 */
export async function setBackfillRate(actor: Actor, input: TSetRateInput) {
  await db().$transaction(async (tx) => {
    const [plan] = await tx.$queryRaw<{ id: string; name: string; status: string; rate: unknown }[]>`
      select id, name, status::text as status, settings -> 'backfillRowsPerSecond' as rate
      from plan where id = ${input.planId}::uuid for no key update`;
    if (!plan) throw new AppError("NOT_FOUND", "No such plan.");
    if (plan.status === "archived") {
      throw new AppError(
        "PRECONDITION_FAILED",
        `"${plan.name}" is archived and read-only; its backfill rate cannot change.`,
      );
    }
    await tx.$executeRaw`
      update plan
      set settings = jsonb_set(settings, '{backfillRowsPerSecond}', to_jsonb(${input.rowsPerSecond}::int)),
          version = version + 1, updated_at = now()
      where id = ${plan.id}::uuid`;
    await appendAuditEvent(tx, {
      actor,
      action: "movement.rate",
      target: { type: "plan", id: plan.id },
      planId: plan.id,
      before: { backfillRowsPerSecond: typeof plan.rate === "number" ? plan.rate : null },
      after: { backfillRowsPerSecond: input.rowsPerSecond },
      reason: input.reason,
    });
  });
  return getMovementStatus(input.planId);
}

/** Drops the slot and publication of a cancelling movement: engine code the supervisor runs. */
export { finishCancel } from "../../engine/runtime/finish-cancel";

export async function getMovementStatus(planId: string, minutes = 15) {
  const movement = await db().dataMovement.findUnique({ where: { planId } });
  const tasks = await db().backfillTask.findMany({ where: { planId }, orderBy: { id: "asc" } });
  const since = new Date(Date.now() - minutes * 60_000);
  const samples = await db().metricSample.findMany({
    where: { planId, at: { gte: since } },
    orderBy: { at: "asc" },
    select: { name: true, value: true, at: true },
  });
  const events = await db().engineEvent.findMany({ where: { planId }, orderBy: { at: "desc" }, take: 20 });
  const rowsCopied = tasks.reduce((n, t) => n + Number(t.rowsCopied), 0);
  const rowsTotal = tasks.reduce(
    (n, t) =>
      n + (t.status === "done" ? Number(t.rowsCopied) : Math.max(Number(t.rowsTotal), Number(t.rowsCopied))),
    0,
  );
  return {
    movement: movement
      ? {
          status: movement.status,
          slotName: movement.slotName,
          publicationName: movement.publicationName,
          slotLsn: movement.slotLsn,
          confirmedLsn: movement.confirmedLsn,
          lastError: movement.lastError === null ? null : withoutInternals(movement.lastError),
          startedAt: movement.startedAt,
          updatedAt: movement.updatedAt,
          /** Tasks a copier still works on: a pause has taken effect once this is 0. */
          copiersActive: await countActiveCopiers(tasks.map((t) => t.id)),
        }
      : null,
    tasks: tasks.map((t) => ({
      id: t.id.toString(),
      table: t.tableName,
      kind: t.kind,
      status: t.status,
      rowsCopied: Number(t.rowsCopied),
      rowsTotal:
        t.status === "done" ? Number(t.rowsCopied) : Math.max(Number(t.rowsTotal), Number(t.rowsCopied)),
      chunks: t.chunks,
      updatedAt: t.updatedAt,
    })),
    totals: {
      rowsCopied,
      rowsTotal,
      tablesDone: tasks.filter((t) => t.status === "done").length,
      tables: tasks.length,
    },
    samples: samples.map((s) => ({ name: s.name, value: s.value, at: s.at })),
    events: events.map((e) => ({
      id: e.id.toString(),
      level: e.level,
      source: e.source,
      message: withoutInternals(e.message),
      at: e.at,
    })),
  };
}
