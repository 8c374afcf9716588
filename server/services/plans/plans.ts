// Migration plans: creation (validated against the real source database), settings, and phase
// transitions through the state machine in engine/state/plan-phase.ts. Every change is audited in
// the same transaction, and every edit names the version it was made from (a stale form is refused).
import { db } from "../../db";
import { findShardKeyColumn } from "../../engine/analysis/key-column";
import { LoadQueryError, readLoadQuery } from "../../engine/backfill/source-load";
import { ConnectionFailedError, withClient } from "../../engine/sql/connect";
import { availableTransitions, decideTransition, type PlanEvent } from "../../engine/state/plan-phase";
import { describeSteps } from "../../engine/state/plan-steps";
import { AppError } from "../../errors";
import type { Prisma } from "../../generated/prisma/client";
import {
  DEFAULT_PLAN_SETTINGS,
  type PlanPhase,
  type TCreatePlanInput,
  type TPlanSettings,
  type TPlanTransitionInput,
  type TUpdatePlanSettingsInput,
  ZPlanSettings,
} from "../../schemas/plan";
import { roleAtLeast } from "../../schemas/user";
import type { Actor } from "../actor";
import { appendAuditEvent } from "../audit/audit-log";
import { connectionUrlFor } from "../databases/databases";
import { checkPlanDatabases } from "../databases/plan-databases";
import { movementCancelOutcome } from "../movement/cancel-guard";
import { loadEngineFacts } from "./engine-facts";

const planInclude = {
  sourceDatabase: true,
  shards: { include: { database: true }, orderBy: { ordinal: "asc" } },
  transitions: { orderBy: { at: "asc" } },
  movement: { select: { status: true } },
} satisfies Prisma.PlanInclude;

type PlanRow = Prisma.PlanGetPayload<{ include: typeof planInclude }>;

function settingsOf(row: { settings: unknown }): TPlanSettings {
  // Stored settings were validated on write; parse again so an old row missing a newer field gets its default.
  const parsed = ZPlanSettings.safeParse({ ...DEFAULT_PLAN_SETTINGS, ...(row.settings as object) });
  return parsed.success ? parsed.data : DEFAULT_PLAN_SETTINGS;
}

function replicationActive(row: PlanRow): boolean {
  return Boolean(row.movement && row.movement.status !== "cancelled");
}

function phaseEnteredAt(row: PlanRow): Date {
  return row.transitions.at(-1)?.at ?? row.createdAt;
}

function summary(row: PlanRow) {
  return {
    id: row.id,
    name: row.name,
    phase: row.phase as PlanPhase,
    status: row.status,
    version: row.version,
    shardKeyColumn: row.shardKeyColumn,
    settings: settingsOf(row),
    source: { id: row.sourceDatabase.id, name: row.sourceDatabase.name },
    shards: row.shards.map((s) => ({ ordinal: s.ordinal, id: s.database.id, name: s.database.name })),
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    archivedAt: row.archivedAt,
  };
}

export type PlanSummary = ReturnType<typeof summary>;

export async function listPlans(options: { includeArchived?: boolean } = {}): Promise<PlanSummary[]> {
  const rows = await db().plan.findMany({
    where: options.includeArchived ? {} : { status: "active" },
    include: planInclude,
    orderBy: { createdAt: "desc" },
  });
  return rows.map(summary);
}

export async function getPlan(planId: string, now = new Date()) {
  const row = await db().plan.findUnique({ where: { id: planId }, include: planInclude });
  if (!row) throw new AppError("NOT_FOUND", "No such plan: it may have been removed, or the link is wrong.");
  const plan = summary(row);
  const facts = {
    phase: plan.phase,
    status: plan.status,
    phaseEnteredAt: phaseEnteredAt(row),
    settings: plan.settings,
    now,
    replicationActive: replicationActive(row),
    engine: await loadEngineFacts(planId, db(), { judgeFirstCohort: plan.phase === "async_backfill" }),
  };
  return {
    ...plan,
    phaseEnteredAt: facts.phaseEnteredAt,
    transitions: row.transitions.map((t) => ({
      id: t.id.toString(),
      from: t.fromPhase as PlanPhase | null,
      to: t.toPhase as PlanPhase,
      actorId: t.actorId,
      reason: t.reason,
      at: t.at,
    })),
    available: availableTransitions(facts),
    /** Each DATA-BALANCE step's state with its evidence (the timeline). */
    steps: describeSteps({ ...facts, shardKeyColumn: plan.shardKeyColumn }),
    /** Whether the data movement may be cancelled in this phase (the UI shows the reason when not). */
    movementCancel: await movementCancelOutcome(db(), plan.id, plan.phase),
  };
}

export type PlanDetail = Awaited<ReturnType<typeof getPlan>>;

async function loadDatabases(input: TCreatePlanInput) {
  const ids = [input.sourceDatabaseId, ...input.shardDatabaseIds];
  const rows = await db().database.findMany({ where: { id: { in: ids } } });
  const byId = new Map(rows.map((r) => [r.id, r]));
  const source = byId.get(input.sourceDatabaseId);
  if (!source)
    throw new AppError("BAD_REQUEST", "The chosen legacy database is not registered.", {
      field: "sourceDatabaseId",
    });
  if (source.kind !== "legacy") {
    throw new AppError(
      "BAD_REQUEST",
      `"${source.name}" is registered as a shard, not as a legacy database.`,
      {
        field: "sourceDatabaseId",
      },
    );
  }
  const shards = input.shardDatabaseIds.map((id) => {
    const shard = byId.get(id);
    if (!shard)
      throw new AppError("BAD_REQUEST", "A chosen shard is not registered.", { field: "shardDatabaseIds" });
    if (shard.kind !== "shard") {
      throw new AppError(
        "BAD_REQUEST",
        `"${shard.name}" is registered as a legacy database, not as a shard.`,
        {
          field: "shardDatabaseIds",
        },
      );
    }
    return shard;
  });
  return { source, shards };
}

/** Only admins set the load query: it runs as legacy's registered user, whose credentials only admins manage. */
function assertMayEditLoadQuery(actor: Actor) {
  if (actor.role === "system" || roleAtLeast(actor.role, "admin")) return;
  throw new AppError(
    "FORBIDDEN",
    "Only an admin may set the load query: it runs on legacy as the registered database user. Ask an admin, or leave it as it was.",
    { field: "settings.sourceLoadQuery" },
  );
}

/** Runs the backfill's load query once on legacy, so a query that cannot work is refused on save. */
async function checkLoadQuery(source: { id: string; name: string }, query: string) {
  try {
    await withClient(await connectionUrlFor(source.id), (client) => readLoadQuery(client, query));
  } catch (error) {
    if (error instanceof LoadQueryError) {
      throw new AppError("BAD_REQUEST", error.message, { field: "settings.sourceLoadQuery" });
    }
    if (error instanceof ConnectionFailedError) {
      throw new AppError(
        "BAD_REQUEST",
        `The legacy database "${source.name}" is unreachable, so the load query cannot be checked: ${error.message}`,
        { field: "settings.sourceLoadQuery" },
      );
    }
    throw error;
  }
}

export async function createPlan(actor: Actor, input: TCreatePlanInput): Promise<PlanDetail> {
  if (await db().plan.findUnique({ where: { name: input.name } })) {
    throw new AppError("CONFLICT", `A plan named "${input.name}" already exists. Choose another name.`, {
      field: "name",
    });
  }
  // Registration ids are not identities: refuse overlapping databases and the control plane.
  const loaded = await loadDatabases(input);
  const { source, shards } = await checkPlanDatabases(actor, loaded.source, loaded.shards);

  // The key must exist on the real source: check now, not at backfill time.
  let tablesWithKey: string[];
  try {
    const report = await withClient(await connectionUrlFor(source.id), (client) =>
      findShardKeyColumn(client, input.shardKeyColumn),
    );
    tablesWithKey = report.tablesWithKey;
    if (input.settings?.sourceLoadQuery) {
      assertMayEditLoadQuery(actor);
      await checkLoadQuery(source, input.settings.sourceLoadQuery);
    }
  } catch (error) {
    if (error instanceof ConnectionFailedError) {
      throw new AppError(
        "BAD_REQUEST",
        `The legacy database "${source.name}" is unreachable: ${error.message} No plan was created.`,
        {
          field: "sourceDatabaseId",
        },
      );
    }
    throw error;
  }
  if (tablesWithKey.length === 0) {
    throw new AppError(
      "BAD_REQUEST",
      `No table in "${source.name}" has a column named "${input.shardKeyColumn}". Check the spelling, or pick the column that identifies the tenant.`,
      { field: "shardKeyColumn" },
    );
  }

  const settings = input.settings ?? DEFAULT_PLAN_SETTINGS;
  const planId = await db().$transaction(async (tx) => {
    const plan = await tx.plan.create({
      data: {
        name: input.name,
        sourceDatabaseId: source.id,
        shardKeyColumn: input.shardKeyColumn,
        settings,
        createdById: actor.id ?? actor.email,
        shards: { create: shards.map((shard, ordinal) => ({ ordinal, databaseId: shard.id })) },
        transitions: {
          create: {
            fromPhase: null,
            toPhase: "define_key",
            actorId: actor.id ?? actor.email,
            reason: "created",
          },
        },
      },
    });
    await appendAuditEvent(tx, {
      actor,
      action: "plan.create",
      target: { type: "plan", id: plan.id },
      planId: plan.id,
      after: {
        name: plan.name,
        source: source.name,
        shards: shards.map((s) => s.name),
        shardKeyColumn: plan.shardKeyColumn,
        tablesWithKey: tablesWithKey.length,
        settings,
      },
    });
    return plan.id;
  });
  return getPlan(planId);
}

function staleVersion(planName: string, current: number): AppError {
  return new AppError(
    "CONFLICT",
    `"${planName}" changed since you opened it (it is now at version ${current}). Reload to see the change, then try again.`,
  );
}

export async function updatePlanSettings(actor: Actor, input: TUpdatePlanSettingsInput): Promise<PlanDetail> {
  const current = await db().plan.findUnique({
    where: { id: input.planId },
    include: { sourceDatabase: true },
  });
  const query = input.settings.sourceLoadQuery;
  const before = current ? settingsOf(current).sourceLoadQuery : "";
  if (current && query !== before) {
    // Any change is an admin's; a query (not a clearing) is also run once on legacy.
    assertMayEditLoadQuery(actor);
    if (query) await checkLoadQuery(current.sourceDatabase, query);
  }
  await db().$transaction(async (tx) => {
    const plan = await tx.plan.findUnique({ where: { id: input.planId } });
    if (!plan) throw new AppError("NOT_FOUND", "No such plan.");
    if (plan.status === "archived") {
      throw new AppError(
        "PRECONDITION_FAILED",
        `"${plan.name}" is archived and read-only; its settings cannot change.`,
      );
    }
    if (plan.version !== input.expectedVersion) throw staleVersion(plan.name, plan.version);
    const updated = await tx.plan.updateMany({
      where: { id: plan.id, version: input.expectedVersion },
      data: { settings: input.settings, version: { increment: 1 } },
    });
    if (updated.count !== 1) throw staleVersion(plan.name, plan.version + 1);
    await appendAuditEvent(tx, {
      actor,
      action: "plan.settings.update",
      target: { type: "plan", id: plan.id },
      planId: plan.id,
      before: settingsOf(plan),
      after: input.settings,
      reason: input.reason,
    });
  });
  return getPlan(input.planId);
}

export async function transitionPlan(actor: Actor, input: TPlanTransitionInput): Promise<PlanDetail> {
  const event: PlanEvent = input.event;
  await db().$transaction(async (tx) => {
    // The plan's row lock first, as a start's claim takes it (start-claim.ts): the movement read
    // below cannot change before this transition is written, so a revert never passes a start.
    await tx.$queryRaw`select 1 from plan where id = ${input.planId}::uuid for no key update`;
    const row = await tx.plan.findUnique({ where: { id: input.planId }, include: planInclude });
    if (!row) throw new AppError("NOT_FOUND", "No such plan.");
    if (row.version !== input.expectedVersion) throw staleVersion(row.name, row.version);
    const outcome = decideTransition(
      {
        phase: row.phase as PlanPhase,
        status: row.status,
        phaseEnteredAt: phaseEnteredAt(row),
        settings: settingsOf(row),
        now: new Date(),
        replicationActive: replicationActive(row),
        engine: await loadEngineFacts(row.id, tx, {
          judgeFirstCohort: row.phase === "async_backfill" && event === "advance",
        }),
      },
      event,
    );
    if (!outcome.allowed) throw new AppError("PRECONDITION_FAILED", outcome.reason);
    const updated = await tx.plan.updateMany({
      where: { id: row.id, version: input.expectedVersion },
      data: {
        phase: outcome.to.phase,
        status: outcome.to.status,
        archivedAt: outcome.to.status === "archived" ? new Date() : null,
        version: { increment: 1 },
      },
    });
    if (updated.count !== 1) throw staleVersion(row.name, row.version + 1);
    if (outcome.to.phase !== row.phase) {
      await tx.phaseTransition.create({
        data: {
          planId: row.id,
          fromPhase: row.phase,
          toPhase: outcome.to.phase,
          actorId: actor.id ?? actor.email,
          reason: input.reason,
        },
      });
    }
    await appendAuditEvent(tx, {
      actor,
      action: `plan.${event}`,
      target: { type: "plan", id: row.id },
      planId: row.id,
      before: { phase: row.phase, status: row.status },
      after: outcome.to,
      reason: input.reason,
    });
  });
  return getPlan(input.planId);
}
