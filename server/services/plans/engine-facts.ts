// The engine's facts about one plan, read from the store for the plan's state machine and timeline
// (engine/state/plan-facts.ts says what each means). A handful of small indexed reads.
import { db } from "../../db";
import type { MovementStatus } from "../../engine/state/movement";
import type { EngineFacts } from "../../engine/state/plan-facts";
import type { Prisma } from "../../generated/prisma/client";

type Reader = Prisma.TransactionClient | ReturnType<typeof db>;

export async function loadEngineFacts(planId: string, reader: Reader = db()): Promise<EngineFacts> {
  const [movement, tasks, lag, lastFull, openMismatches, checking, tenantsOnShards] = await Promise.all([
    reader.dataMovement.findUnique({
      where: { planId },
      select: { status: true, confirmedLsn: true, lastError: true },
    }),
    reader.backfillTask.findMany({
      where: { planId },
      select: { status: true, rowsCopied: true, updatedAt: true },
    }),
    reader.metricSample.findFirst({
      where: { planId, name: "cdc.lag_ms" },
      orderBy: { at: "desc" },
      select: { value: true, at: true },
    }),
    reader.parityRun.findFirst({
      where: { planId, kind: "full", status: "complete" },
      orderBy: { finishedAt: "desc" },
      select: { finishedAt: true, rowsVerified: true, rowsTotal: true, mismatchesConfirmed: true },
    }),
    reader.parityMismatch.count({ where: { planId, status: "open" } }),
    reader.parityRun.count({ where: { planId, status: "running" } }),
    reader.tenantRoute.count({ where: { planId, ownerDatabaseId: { not: null } } }),
  ]);
  const done = tasks.filter((t) => t.status === "done");
  const allDone = tasks.length > 0 && done.length === tasks.length;
  return {
    movement: movement
      ? {
          status: movement.status as MovementStatus,
          confirmedLsn: movement.confirmedLsn,
          lastError: movement.lastError,
        }
      : null,
    backfill: {
      tables: tasks.length,
      tablesDone: done.length,
      rowsCopied: tasks.reduce((n, t) => n + Number(t.rowsCopied), 0),
      finishedAt: allDone ? new Date(Math.max(...done.map((t) => t.updatedAt.getTime()))) : null,
    },
    lag: lag ? { ms: lag.value, at: lag.at } : null,
    tenantsOnShards,
    parity: {
      lastFull:
        lastFull?.finishedAt != null
          ? {
              finishedAt: lastFull.finishedAt,
              rowsVerified: Number(lastFull.rowsVerified),
              rowsTotal: Number(lastFull.rowsTotal),
              differences: lastFull.mismatchesConfirmed,
            }
          : null,
      openMismatches,
      checking: checking > 0,
    },
  };
}
