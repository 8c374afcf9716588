// Starting and steering a plan's data movement (backfill + forward CDC). Operators only; every
// change audited. The engine itself runs in worker processes (server/engine/runtime/supervisor.ts),
// which read the state written here.
//
// Start, in order (each step safe to repeat after a crash):
//   1. introspect legacy; refuse tables the migration cannot carry
//   2. create the schema on every shard (idempotent)
//   3. create the publication, then the slot: its consistent point precedes every backfill read,
//      so no change can fall between the copy and the stream
//   4. record the movement (schema snapshot, slot LSN) and one backfill task per table, audited

import type pg from "pg";
import { db } from "../../db";
import { introspectSource, unsupportedTables } from "../../engine/analysis/introspect";
import { prepareShard, ShardSchemaConflictError } from "../../engine/backfill/prepare-shards";
import { TOUCHED_TABLE } from "../../engine/backfill/snapshot-guard";
import { createPublication, createSlot, dropPublication, dropSlot, formatLsn } from "../../engine/cdc/slot";
import { NOTIFY_ENGINE_SQL } from "../../engine/runtime/wake";
import { ConnectionFailedError, withClient } from "../../engine/sql/connect";
import { type MovementStatus, nextMovementStatus } from "../../engine/state/movement";
import { AppError } from "../../errors";
import type { Prisma } from "../../generated/prisma/client";
import type { TControlMovementInput, TSetRateInput } from "../../schemas/movement";
import { ZPlanSettings } from "../../schemas/plan";
import type { Actor } from "../actor";
import { appendAuditEvent } from "../audit/audit-log";
import { connectionUrlFor } from "../databases/databases";

const MOVEMENT_PHASES = new Set([
  "two_way_cdc",
  "async_backfill",
  "bit_by_bit_routing",
  "automated_parity",
  "live_rollback",
]);

export function replicationNames(planId: string) {
  const short = planId.replaceAll("-", "").slice(0, 16);
  return { publicationName: `shardshift_${short}`, slotName: `shardshift_${short}` };
}

async function reachable<T>(what: string, url: string, fn: Parameters<typeof withClient<T>>[1]): Promise<T> {
  try {
    return await withClient(url, fn, { timeoutMs: 10_000 });
  } catch (error) {
    if (error instanceof ConnectionFailedError) {
      throw new AppError("BAD_REQUEST", `${what} is unreachable: ${error.message} Nothing was started.`);
    }
    if (error instanceof ShardSchemaConflictError) throw new AppError("PRECONDITION_FAILED", error.message);
    throw error;
  }
}

async function nonEmptyTables(client: pg.ClientBase, tables: { qualified: string }[]): Promise<string[]> {
  const found: string[] = [];
  for (const t of tables) {
    const exists = await client.query(`select exists (select 1 from ${t.qualified}) as e`);
    if (exists.rows[0]?.e) found.push(t.qualified.replaceAll('"', ""));
  }
  return found;
}

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
  if (plan.movement && plan.movement.status !== "cancelled") {
    throw new AppError("CONFLICT", `The data movement is already ${plan.movement.status}.`);
  }

  // 1. introspect
  const sourceUrl = await connectionUrlFor(plan.sourceDatabaseId);
  const schema = await reachable(`The legacy database "${plan.sourceDatabase.name}"`, sourceUrl, (c) =>
    introspectSource(c, plan.shardKeyColumn),
  );
  const problems = unsupportedTables(schema);
  if (problems.length) {
    throw new AppError("PRECONDITION_FAILED", problems.map((p) => `${p.table} ${p.problem}`).join(" "));
  }
  if (!schema.tables.some((t) => t.kind === "sharded")) {
    throw new AppError("PRECONDITION_FAILED", `No table on legacy has the shard key ${plan.shardKeyColumn}.`);
  }

  // 2. shards: the same shard must not be filled by two movements at once, and rows left by an
  //    earlier copy must go first — this copy upserts what legacy has, it cannot know what legacy deleted since.
  const busy = await db().dataMovement.findFirst({
    where: {
      planId: { not: plan.id },
      status: { not: "cancelled" },
      plan: { shards: { some: { databaseId: { in: plan.shards.map((s) => s.databaseId) } } } },
    },
    include: { plan: { select: { name: true } } },
  });
  if (busy) {
    throw new AppError(
      "CONFLICT",
      `Plan "${busy.plan.name}" is moving data into the same shard(s) (its movement is ${busy.status}). Cancel it first; two movements into one shard would overwrite each other.`,
    );
  }
  for (const shard of plan.shards) {
    const url = await connectionUrlFor(shard.databaseId);
    await reachable(`Shard "${shard.database.name}"`, url, async (c) => {
      await prepareShard(c, shard.database.name, schema);
      const filled = await nonEmptyTables(c, schema.tables);
      if (filled.length && !input.resetShards) {
        throw new AppError(
          "PRECONDITION_FAILED",
          `Shard "${shard.database.name}" already holds rows in ${filled.slice(0, 4).join(", ")}${filled.length > 4 ? ` and ${filled.length - 4} more` : ""} (left by an earlier data movement?). ` +
            "This copy would not remove rows legacy deleted since. Start again with “Empty the shard tables first”.",
        );
      }
      if (filled.length) await c.query(`truncate ${schema.tables.map((t) => t.qualified).join(", ")}`);
      // An earlier movement's guard entries mean nothing to this one.
      await c.query(`truncate ${TOUCHED_TABLE}`);
    });
  }

  // 3. publication, then slot (drop leftovers of a cancelled or crashed start first)
  const names = replicationNames(plan.id);
  const slotLsn = await reachable(
    `The legacy database "${plan.sourceDatabase.name}"`,
    sourceUrl,
    async (c) => {
      await dropSlot(c, names.slotName, { terminateActive: true });
      await dropPublication(c, names.publicationName);
      await createPublication(
        c,
        names.publicationName,
        schema.tables.map((t) => ({ schema: t.schema, table: t.name })),
      );
      return createSlot(c, names.slotName);
    },
  );

  // 4. record it
  await db().$transaction(async (tx) => {
    await tx.backfillTask.deleteMany({ where: { planId: plan.id } });
    await tx.tenantCensus.deleteMany({ where: { planId: plan.id } });
    await tx.dataMovement.upsert({
      where: { planId: plan.id },
      create: {
        planId: plan.id,
        status: "running",
        ...names,
        slotLsn: formatLsn(slotLsn),
        sourceSchema: schema as unknown as Prisma.InputJsonValue,
      },
      update: {
        status: "running",
        ...names,
        slotLsn: formatLsn(slotLsn),
        confirmedLsn: null,
        lastError: null,
        startedAt: new Date(),
        censusAt: null,
        sourceSchema: schema as unknown as Prisma.InputJsonValue,
      },
    });
    await tx.backfillTask.createMany({
      data: schema.tables.map((t) => ({
        planId: plan.id,
        tableName: t.qualified,
        kind: t.kind,
        rowsTotal: BigInt(Math.max(0, Math.round(t.estimatedRows))),
      })),
    });
    await appendAuditEvent(tx, {
      actor,
      action: "movement.start",
      target: { type: "plan", id: plan.id },
      planId: plan.id,
      after: {
        tables: schema.tables.length,
        sharded: schema.tables.filter((t) => t.kind === "sharded").length,
        shards: plan.shards.map((s) => s.database.name),
        slot: names.slotName,
        slotLsn: formatLsn(slotLsn),
        resetShards: Boolean(input.resetShards),
      },
      reason: input.reason,
    });
    await tx.$executeRawUnsafe(NOTIFY_ENGINE_SQL, plan.id);
  });
  return getMovementStatus(plan.id);
}

export async function controlDataMovement(actor: Actor, input: TControlMovementInput) {
  await db().$transaction(async (tx) => {
    const movement = await tx.dataMovement.findUnique({ where: { planId: input.planId } });
    if (!movement)
      throw new AppError("PRECONDITION_FAILED", "No data movement has been started for this plan.");
    const outcome = nextMovementStatus(movement.status as MovementStatus, input.action);
    if (!outcome.ok) throw new AppError("PRECONDITION_FAILED", outcome.reason);
    await tx.dataMovement.update({
      where: { planId: input.planId },
      data: { status: outcome.to, lastError: null },
    });
    await appendAuditEvent(tx, {
      actor,
      action: `movement.${input.action}`,
      target: { type: "plan", id: input.planId },
      planId: input.planId,
      before: { status: movement.status },
      after: { status: outcome.to },
      reason: input.reason,
    });
    await tx.$executeRawUnsafe(NOTIFY_ENGINE_SQL, input.planId);
  });
  return getMovementStatus(input.planId);
}

/** Changes the plan's backfill rate limit; running slices pick it up within a second. */
export async function setBackfillRate(actor: Actor, input: TSetRateInput) {
  await db().$transaction(async (tx) => {
    const plan = await tx.plan.findUnique({ where: { id: input.planId } });
    if (!plan) throw new AppError("NOT_FOUND", "No such plan.");
    const settings = ZPlanSettings.parse(plan.settings);
    const next = { ...settings, backfillRowsPerSecond: input.rowsPerSecond };
    await tx.plan.update({ where: { id: plan.id }, data: { settings: next, version: { increment: 1 } } });
    await appendAuditEvent(tx, {
      actor,
      action: "movement.rate",
      target: { type: "plan", id: plan.id },
      planId: plan.id,
      before: { backfillRowsPerSecond: settings.backfillRowsPerSecond },
      after: { backfillRowsPerSecond: input.rowsPerSecond },
      reason: input.reason,
    });
  });
  return getMovementStatus(input.planId);
}

/** Drops the slot and publication of a cancelling movement; run by the supervisor (any worker). */
export async function finishCancel(planId: string) {
  const movement = await db().dataMovement.findUnique({ where: { planId } });
  if (movement?.status !== "cancelling") return;
  const plan = await db().plan.findUniqueOrThrow({ where: { id: planId } });
  const url = await connectionUrlFor(plan.sourceDatabaseId);
  await withClient(url, async (c) => {
    await dropSlot(c, movement.slotName, { terminateActive: true });
    await dropPublication(c, movement.publicationName);
  });
  await db().$transaction(async (tx) => {
    await tx.dataMovement.update({ where: { planId }, data: { status: "cancelled" } });
    await tx.backfillTask.updateMany({
      where: { planId, status: { not: "done" } },
      data: { status: "cancelled" },
    });
    await tx.engineEvent.create({
      data: {
        planId,
        level: "info",
        source: "movement",
        message: `Cancelled: dropped slot ${movement.slotName} and publication ${movement.publicationName}.`,
      },
    });
  });
}

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
          lastError: movement.lastError,
          startedAt: movement.startedAt,
          updatedAt: movement.updatedAt,
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
      message: e.message,
      at: e.at,
    })),
  };
}
