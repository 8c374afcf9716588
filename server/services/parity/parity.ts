// Parity for people and gates: the status of a plan (clean / drift / unverified / unchecked), its history for
// the charts, the open mismatches with both sides' values, checks on demand, and repairs
// (operators only, audited with before and after).
import type PgBoss from "pg-boss";
import { db } from "../../db";
import { locate, WHOLE_KEY_RANGE } from "../../engine/parity/chunk-hash";
import type { UnverifiedScope } from "../../engine/parity/record-run";
import { repairRow } from "../../engine/parity/repair";
import { hashPlacement } from "../../engine/router/placement";
import { planTable } from "../../engine/shared/table-plan";
import { loadMovementContext } from "../../engine/store/movement-context";
import { failAbandonedRuns } from "../../engine/store/run-liveness";
import { AppError, withoutInternals } from "../../errors";
import { QUEUES } from "../../jobs/queue";
import type { TRepairInput } from "../../schemas/parity";
import type { Actor } from "../actor";
import { appendAuditEvent } from "../audit/audit-log";

/**
 * clean: the last full check verified every row and nothing is open; drift: open mismatches;
 * unverified: nothing open, but the last full check could not verify some tenants' rows (the
 * check says which and why); unchecked: no full check has finished.
 */
export type ParityState = "clean" | "drift" | "unverified" | "unchecked";

function unverifiedOf(run: { unverified: unknown } | null): UnverifiedScope[] {
  return Array.isArray(run?.unverified) ? (run.unverified as UnverifiedScope[]) : [];
}

/**
 * What cohort gates and the breaker's automatic trip read: clean only after a full pass verified
 * every row and nothing is open — for the plan, or narrowed to one table and/or one tenant. Every
 * full pass checks every tenant of every table, so its time is each tenant's last full check too.
 */
export async function parityGate(
  planId: string,
  scope: { table?: string; tenant?: string } = {},
): Promise<{
  state: ParityState;
  openMismatches: number;
  lastFullCheckAt: Date | null;
  unverified: UnverifiedScope[];
}> {
  const lastFull = await db().parityRun.findFirst({
    where: { planId, kind: "full", status: "complete" },
    orderBy: { finishedAt: "desc" },
  });
  const openMismatches = await db().parityMismatch.count({
    where: { planId, status: "open", tableName: scope.table, tenantKey: scope.tenant },
  });
  const unverified = unverifiedOf(lastFull).filter(
    (u) =>
      (scope.table === undefined || u.table === scope.table) &&
      (scope.tenant === undefined || u.tenant === scope.tenant),
  );
  const state: ParityState =
    openMismatches > 0 ? "drift" : !lastFull ? "unchecked" : unverified.length ? "unverified" : "clean";
  return { state, openMismatches, lastFullCheckAt: lastFull?.finishedAt ?? null, unverified };
}

export async function getParityStatus(planId: string, minutes = 60) {
  // A check whose worker died says so here rather than "running" for ever.
  await failAbandonedRuns(planId);
  const gate = await parityGate(planId);
  const lastFull = await db().parityRun.findFirst({
    where: { planId, kind: "full", status: "complete" },
    orderBy: { finishedAt: "desc" },
  });
  const running = await db().parityRun.findFirst({
    where: { planId, status: "running" },
    orderBy: { startedAt: "desc" },
  });
  const runs = await db().parityRun.findMany({ where: { planId }, orderBy: { startedAt: "desc" }, take: 10 });
  const mismatches = await db().parityMismatch.findMany({
    where: { planId, status: "open" },
    orderBy: { detectedAt: "desc" },
    take: 200,
  });
  const since = new Date(Date.now() - minutes * 60_000);
  const samples = await db().metricSample.findMany({
    where: {
      planId,
      at: { gte: since },
      OR: [{ name: { startsWith: "parity." } }, { name: "cdc.lag_ms" }],
    },
    orderBy: { at: "asc" },
    select: { name: true, value: true, at: true },
  });
  const perTenant = new Map<string, number>();
  for (const m of mismatches)
    if (m.tenantKey) perTenant.set(m.tenantKey, (perTenant.get(m.tenantKey) ?? 0) + 1);
  return {
    ...gate,
    checking: Boolean(running),
    lastFull: lastFull
      ? {
          id: lastFull.id.toString(),
          finishedAt: lastFull.finishedAt,
          rowsVerified: Number(lastFull.rowsVerified),
          rowsTotal: Number(lastFull.rowsTotal),
          tables: lastFull.tables as {
            table: string;
            rowsVerified: number;
            /** Absent in checks recorded before rows in the tables were counted. */
            rows?: number;
            chunks: number;
            mismatches: number;
            unverifiedTenants?: number;
            checkedAt: string;
          }[],
        }
      : null,
    runs: runs.map((r) => ({
      id: r.id.toString(),
      kind: r.kind,
      status: r.status,
      rowsVerified: Number(r.rowsVerified),
      rowsTotal: Number(r.rowsTotal),
      unverifiedTenants: unverifiedOf(r).length,
      chunksChecked: r.chunksChecked,
      chunksMismatched: r.chunksMismatched,
      mismatchesConfirmed: r.mismatchesConfirmed,
      startedAt: r.startedAt,
      finishedAt: r.finishedAt,
      error: r.error === null ? null : withoutInternals(r.error),
    })),
    mismatches: mismatches.map((m) => ({
      id: m.id.toString(),
      table: m.tableName,
      tenant: m.tenantKey,
      shard: m.shardOrdinal,
      key: m.rowKey as string[],
      kind: m.kind as "missing" | "extra" | "changed",
      columns: m.columns as string[],
      legacy: (m.legacyValues ?? null) as Record<string, string | null> | null,
      shardValues: (m.shardValues ?? null) as Record<string, string | null> | null,
      detectedAt: m.detectedAt,
    })),
    tenantsWithDrift: [...perTenant.entries()].map(([tenant, rows]) => ({ tenant, rows })),
    samples,
  };
}

let queue: PgBoss | null = null;
/** The web server enqueues through a queue client of its own (created on first use). */
async function queueClient(): Promise<PgBoss> {
  if (!queue) {
    const { startQueue } = await import("../../jobs/queue");
    const { serverEnv } = await import("../../env");
    queue = await startQueue(serverEnv().DATABASE_URL, { supervise: false });
  }
  return queue;
}

export async function requestParityCheck(actor: Actor, input: { planId: string; kind: "full" | "recent" }) {
  const movement = await db().dataMovement.findUnique({ where: { planId: input.planId } });
  if (!movement || !["running", "paused"].includes(movement.status)) {
    throw new AppError(
      "PRECONDITION_FAILED",
      "Parity compares legacy with the shards while CDC streams: start the data movement first.",
    );
  }
  const boss = await queueClient();
  await boss.send(
    QUEUES.parityCheck,
    { planId: input.planId, kind: input.kind },
    { singletonKey: `parity-${input.planId}` },
  );
  await db().$transaction((tx) =>
    appendAuditEvent(tx, {
      actor,
      action: "parity.check.request",
      target: { type: "plan", id: input.planId },
      planId: input.planId,
      after: { kind: input.kind },
    }),
  );
}

export async function repair(actor: Actor, input: TRepairInput) {
  const ctx = await loadMovementContext(input.planId).catch(() => {
    throw new AppError("PRECONDITION_FAILED", "This plan has no data movement: nothing to repair.");
  });
  const planFor = (tableName: string) => {
    const table = ctx.schema.tables.find((t) => t.qualified === tableName);
    if (!table) throw new AppError("BAD_REQUEST", `No table ${tableName} in this migration.`);
    return planTable(table, ctx.schema.shardKeyColumn);
  };
  const repaired: {
    table: string;
    shard: number;
    key: string[];
    action: string;
    before: unknown;
    after: unknown;
  }[] = [];
  let mismatchIds: bigint[] = [];

  if (input.scope === "row" || input.scope === "table") {
    const mismatches =
      input.scope === "row"
        ? await db().parityMismatch.findMany({
            where: { id: BigInt(input.mismatchId), planId: input.planId, status: "open" },
          })
        : await db().parityMismatch.findMany({
            where: { planId: input.planId, tableName: input.table, status: "open" },
          });
    if (mismatches.length === 0)
      throw new AppError(
        "NOT_FOUND",
        "No open mismatch to repair (it may have been repaired or resolved already).",
      );
    for (const m of mismatches) {
      const plan = planFor(m.tableName);
      const key = m.rowKey as string[];
      const outcome = await repairRow(ctx.source, ctx.shards, ctx.placement, plan, m.shardOrdinal, key);
      repaired.push({
        table: m.tableName,
        shard: m.shardOrdinal,
        key,
        action: outcome.action,
        before: m.shardValues,
        after: outcome.legacyRow,
      });
    }
    mismatchIds = mismatches.map((m) => m.id);
  } else {
    // A whole tenant: locate every difference in every sharded table, then repair each row.
    const shard = ctx.placement.shardFor(input.tenant);
    for (const table of ctx.schema.tables.filter((t) => t.kind === "sharded")) {
      const plan = planTable(table, ctx.schema.shardKeyColumn);
      const located = await locate(ctx.source, ctx.shards, ctx.placement, plan, WHOLE_KEY_RANGE, {
        tenant: input.tenant,
        shard,
      });
      for (const d of located.differences) {
        const outcome = await repairRow(ctx.source, ctx.shards, ctx.placement, plan, d.shard, d.key);
        repaired.push({
          table: d.table,
          shard: d.shard,
          key: d.key,
          action: outcome.action,
          before: d.shardRow,
          after: outcome.legacyRow,
        });
      }
    }
    mismatchIds = (
      await db().parityMismatch.findMany({
        where: { planId: input.planId, tenantKey: input.tenant, status: "open" },
      })
    ).map((m) => m.id);
  }

  await db().$transaction(async (tx) => {
    if (mismatchIds.length) {
      await tx.parityMismatch.updateMany({
        where: { id: { in: mismatchIds } },
        data: { status: "repaired", closedAt: new Date() },
      });
    }
    await appendAuditEvent(tx, {
      actor,
      action: `parity.repair.${input.scope}`,
      target: { type: "plan", id: input.planId },
      planId: input.planId,
      before: repaired.map((r) => ({ table: r.table, shard: r.shard, key: r.key, row: r.before })),
      after: repaired.map((r) => ({
        table: r.table,
        shard: r.shard,
        key: r.key,
        action: r.action,
        row: r.after,
      })),
      reason: input.reason,
    });
  });
  return { repaired: repaired.length };
}

/** One tenant's parity, table by table: the gate per table, and changes still waiting for a recent check. */
export async function tenantParity(planId: string, tenant: string) {
  const plan = await db().plan.findUnique({
    where: { id: planId },
    include: { movement: true, shards: { select: { ordinal: true } } },
  });
  if (!plan) throw new AppError("NOT_FOUND", "No such plan.");
  const schema = plan.movement?.sourceSchema as { tables?: { qualified: string; kind: string }[] } | null;
  const tables = (schema?.tables ?? []).filter((t) => t.kind === "sharded").map((t) => t.qualified);
  if (tables.length === 0) {
    throw new AppError(
      "PRECONDITION_FAILED",
      "No data movement has been started for this plan: there is nothing to check for a tenant yet.",
    );
  }
  const [gate, open, pending] = await Promise.all([
    parityGate(planId, { tenant }),
    db().parityMismatch.groupBy({
      by: ["tableName"],
      where: { planId, tenantKey: tenant, status: "open" },
      _count: true,
    }),
    db().parityTouched.findMany({
      where: { planId, tenantKey: tenant },
      select: { tableName: true, touchedAt: true },
    }),
  ]);
  const openBy = new Map(open.map((o) => [o.tableName, o._count]));
  const pendingBy = new Map(pending.map((p) => [p.tableName, p.touchedAt]));
  return {
    tenant,
    shard: hashPlacement(plan.shards.length).shardFor(tenant),
    ...gate,
    tables: tables.map((table) => {
      const openMismatches = openBy.get(table) ?? 0;
      return {
        table,
        state: (openMismatches
          ? "drift"
          : !gate.lastFullCheckAt
            ? "unchecked"
            : gate.unverified.some((u) => u.table === table)
              ? "unverified"
              : "clean") as ParityState,
        /** Why the last full check could not verify this table's rows of the tenant. */
        unverifiedReason: gate.unverified.find((u) => u.table === table)?.reason ?? null,
        openMismatches,
        lastFullCheckAt: gate.lastFullCheckAt,
        /** Changed by CDC since the last recent check: the next one (≤ 30 s) looks at it. */
        changedSince: pendingBy.get(table) ?? null,
      };
    }),
  };
}
