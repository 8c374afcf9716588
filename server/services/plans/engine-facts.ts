// The engine's facts about one plan, read from the store for the plan's state machine and timeline
// (engine/state/plan-facts.ts says what each means). A handful of small indexed reads, and cohort 1's
// gates only when asked.
import { db } from "../../db";
import { planBreakerState } from "../../engine/state/breaker";
import type { MovementStatus } from "../../engine/state/movement";
import type { EngineFacts } from "../../engine/state/plan-facts";
import type { Prisma } from "../../generated/prisma/client";
import { evaluateCohortGates } from "../cohorts/gates";

type Reader = Prisma.TransactionClient | ReturnType<typeof db>;

export async function loadEngineFacts(
  planId: string,
  reader: Reader = db(),
  options: {
    /**
     * Judge cohort 1's gates (a dozen reads of the measured series): only where a decision needs
     * it — the plan about to leave the backfill for bit-by-bit routing.
     */
    judgeFirstCohort?: boolean;
  } = {},
): Promise<EngineFacts> {
  const [movement, tasks, lag, lastFull, openMismatches, checking, tenantsOnShards, tenants] =
    await Promise.all([
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
      loadTenantFacts(planId, reader),
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
    ...tenants,
    cohorts:
      tenants.cohorts && options.judgeFirstCohort && tenants.cohorts.drawn > 0
        ? { ...tenants.cohorts, firstGates: await judgeFirstCohort(planId) }
        : tenants.cohorts,
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

/** The tenants' side of the facts: census, cutovers, the ladder's progress and the breaker. */
async function loadTenantFacts(planId: string, reader: Reader) {
  const [rows, cuttingOver, newestTrip] = await Promise.all([
    reader.$queryRaw<
      {
        total: bigint;
        last_to_shard_at: Date | null;
        drawn: bigint;
        first_on_legacy: number | null;
      }[]
    >`
      select
        (select count(distinct tenant_key) from tenant_census where plan_id = ${planId}::uuid) as total,
        (select max(updated_at) from tenant_route
          where plan_id = ${planId}::uuid and owner_database_id is not null) as last_to_shard_at,
        (select count(*) from cohort where plan_id = ${planId}::uuid) as drawn,
        (select min(m.ordinal) from cohort_member m
          left join tenant_route r on r.plan_id = m.plan_id and r.tenant_key = m.tenant_key
          where m.plan_id = ${planId}::uuid and m.ordinal is not null and r.owner_database_id is null
        ) as first_on_legacy`,
    reader.tenantCutover.count({ where: { planId, status: { notIn: ["done", "aborted"] } } }),
    reader.breakerTrip.findFirst({
      where: { planId },
      orderBy: { createdAt: "desc" },
      select: { status: true, rearmedAt: true },
    }),
  ]);
  const row = rows[0];
  const drawn = Number(row?.drawn ?? 0);
  return {
    tenantsTotal: row && Number(row.total) > 0 ? Number(row.total) : null,
    tenantsCuttingOver: cuttingOver,
    lastToShardAt: row?.last_to_shard_at ?? null,
    // Cohorts nest: cohort k is wholly on shards when no member of cohorts 1…k is on legacy.
    cohorts:
      drawn > 0
        ? {
            drawn,
            promoted: row?.first_on_legacy == null ? drawn : row.first_on_legacy - 1,
            firstGates: null,
          }
        : null,
    breaker: {
      status: planBreakerState(newestTrip),
      armedSince: newestTrip?.status === "armed" ? (newestTrip.rearmedAt ?? null) : null,
    },
  };
}

async function judgeFirstCohort(planId: string): Promise<{ open: boolean; why: string | null }> {
  const judged = await evaluateCohortGates(planId, 1);
  const blocking = judged.gates.filter((g) => g.verdict !== "pass");
  return {
    open: judged.open,
    why: judged.open ? null : blocking.map((g) => `${g.title} is ${g.verdict}: ${g.reason}`).join(" "),
  };
}
