// Promoting a cohort (issue 14): the operator's side of a durable job the engine drives
// (server/engine/promotion/promotion-runner.ts). A promotion is refused — with each gate's reason —
// while a gate of the cohort fails or cannot see (inconclusive); an admin may override with a
// reason, audited with every judgement. It cuts over, smallest first, the cohort's tenants still on
// legacy, `promotionConcurrency` at a time, each through the same request a person makes
// (requestCutover), so each cutover is audited and checked like one.
//
// Controls write the promotion's status (guarded by the status they leave); the runner reads it
// between waves. Nothing here waits on the engine.
import { db } from "../../db";
import { compareKeys } from "../../engine/cohorts/assign";
import type { Judgement } from "../../engine/gates/judgement";
import { NOTIFY_ENGINE_SQL } from "../../engine/runtime/wake";
import { planBreakerState } from "../../engine/state/breaker";
import {
  nextPromotionStatus,
  PROMOTION_ENDED,
  type PromotionEvent,
  type PromotionStatus,
} from "../../engine/state/promotion";
import { AppError } from "../../errors";
import { Prisma } from "../../generated/prisma/client";
import type {
  TPromoteInput,
  TPromotePreviewInput,
  TPromotionControlInput,
  TPromotionsInput,
  TRetryTenantInput,
} from "../../schemas/cohorts";
import type { Actor } from "../actor";
import { appendAuditEvent } from "../audit/audit-log";
import { lockPlanForControl } from "../movement/cancel-guard";
import { previewCutover } from "../routing/cutover";
import { backOnLegacy, backOnLegacyKey } from "./back-on-legacy";
import { evaluateCohortGates, settingsOf } from "./gates";

const CUTOVER_IN_FLIGHT = ["requested", "prechecking", "fencing", "draining", "flipped", "aborting"];

export interface PromotionCandidate {
  tenant: string;
  rows: number;
}

/**
 * Cohort `ordinal`'s tenants (nested: every member whose cohort is at most it, and tenants the
 * census found after the draw when it is the last) that are still on legacy with no cutover in
 * flight, smallest first as the ladder ranks them.
 */
export async function promotionCandidates(planId: string, ordinal: number): Promise<PromotionCandidate[]> {
  const rows = await db().$queryRaw<{ tenant_key: string; rows: number }[]>`
    with last as (select max(ordinal) as ordinal from cohort where plan_id = ${planId}::uuid),
    members as (
      select tenant_key from cohort_member
      where plan_id = ${planId}::uuid and ordinal is not null and ordinal <= ${ordinal}::int
      union
      select distinct c.tenant_key from tenant_census c, last
      where c.plan_id = ${planId}::uuid and last.ordinal <= ${ordinal}::int
        and not exists (select 1 from cohort_member m where m.plan_id = c.plan_id and m.tenant_key = c.tenant_key)
    )
    select m.tenant_key,
           coalesce((select sum(rows) from tenant_census c where c.plan_id = ${planId}::uuid and c.tenant_key = m.tenant_key), 0)::float8 as rows
    from members m
    where not exists (select 1 from tenant_route r
                      where r.plan_id = ${planId}::uuid and r.tenant_key = m.tenant_key and r.owner_database_id is not null)
      and not exists (select 1 from tenant_cutover t
                      where t.plan_id = ${planId}::uuid and t.tenant_key = m.tenant_key and t.status = any(${CUTOVER_IN_FLIGHT}::text[]))`;
  return rows
    .map((r) => ({ tenant: r.tenant_key, rows: r.rows }))
    .sort((a, b) => a.rows - b.rows || compareKeys(a.tenant, b.tenant));
}

async function cohortOf(planId: string, ordinal: number) {
  const cohorts = await db().cohort.findMany({
    where: { planId },
    orderBy: { ordinal: "asc" },
    select: { ordinal: true, label: true },
  });
  if (cohorts.length === 0) {
    throw new AppError(
      "PRECONDITION_FAILED",
      "The plan's cohort ladder is not drawn yet: draw it on the cohorts page, then promote its first cohort.",
    );
  }
  const cohort = cohorts.find((c) => c.ordinal === ordinal);
  if (!cohort) {
    throw new AppError(
      "NOT_FOUND",
      `The ladder has cohorts 1 to ${cohorts.at(-1)?.ordinal}: there is no cohort ${ordinal}.`,
    );
  }
  return cohort;
}

async function promotionInFlight(planId: string) {
  return db().promotion.findFirst({
    where: { planId, status: { notIn: [...PROMOTION_ENDED] } },
    select: { id: true, ordinal: true, status: true, requestedByEmail: true, createdAt: true },
  });
}

const gateLine = (g: Judgement) => `${g.title} is ${g.verdict}: ${g.reason}`;

/** Mean duration of the plan's recent completed cutovers (request → done), for the dry run's estimate. */
async function recentCutoverMs(planId: string): Promise<number | null> {
  const [row] = await db().$queryRaw<{ ms: number | null }[]>`
    select avg(extract(epoch from (ended_at - created_at)) * 1000)::float8 as ms from (
      select ended_at, created_at from tenant_cutover
      where plan_id = ${planId}::uuid and status = 'done' and ended_at is not null
      order by ended_at desc limit 50) recent`;
  return row?.ms ?? null;
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}

/**
 * Dry run: what promoting cohort `ordinal` would do now — which tenants, in what order, the
 * expected freeze of each (the cutover preview's figure), how long it should take, and everything
 * that would stop it (the gates that do not pass, a promotion in flight, each tenant's blockers).
 * Writes nothing.
 */
export async function previewPromotion(input: TPromotePreviewInput) {
  const cohort = await cohortOf(input.planId, input.ordinal);
  const settings = await settingsOf(input.planId);
  const [gates, candidates, inFlight, meanCutoverMs] = await Promise.all([
    evaluateCohortGates(input.planId, input.ordinal),
    promotionCandidates(input.planId, input.ordinal),
    promotionInFlight(input.planId),
    recentCutoverMs(input.planId),
  ]);
  const previews = await mapLimit(candidates, 8, (c) =>
    previewCutover({ planId: input.planId, tenantKey: c.tenant }),
  );
  const tenants = candidates.map((c, i) => {
    const p = previews[i];
    return {
      position: i + 1,
      tenant: c.tenant,
      rows: c.rows,
      to: p?.to.name ?? null,
      expectedFreezeMs: p?.expectedFreezeMs ?? null,
      budgetMs: p?.budgetMs ?? settings.freezeBudgetMs,
      blockers: p?.blockers ?? [],
    };
  });
  const blockers: string[] = [];
  if (inFlight) {
    blockers.push(
      `Cohort ${inFlight.ordinal}'s promotion is ${inFlight.status} (started by ${inFlight.requestedByEmail}): one promotion per plan at a time — wait for it, or stop it.`,
    );
  }
  for (const g of gates.gates) if (g.verdict !== "pass") blockers.push(gateLine(g));
  if (candidates.length === 0) {
    blockers.push(
      `Every tenant of cohort ${cohort.ordinal} (${cohort.label}) is on a shard or cutting over already.`,
    );
  }
  const blockedTenants = tenants.filter((t) => t.blockers.length > 0);
  if (blockedTenants.length > 0) {
    const first = blockedTenants[0];
    blockers.push(
      `${blockedTenants.length} tenant${blockedTenants.length === 1 ? "" : "s"} would not be cut over as things stand (e.g. ${first?.tenant}: ${first?.blockers[0]}).`,
    );
  }
  const freezes = tenants.flatMap((t) => (t.expectedFreezeMs === null ? [] : [t.expectedFreezeMs]));
  return {
    planId: input.planId,
    cohort,
    concurrency: settings.promotionConcurrency,
    tenants,
    rows: tenants.reduce((n, t) => n + t.rows, 0),
    expectedFreezeMsMax: freezes.length ? Math.max(...freezes) : null,
    /** Waves of `concurrency` cutovers × the plan's recent mean cutover time (null: none done yet). */
    estimatedSeconds:
      meanCutoverMs === null
        ? null
        : Math.round((Math.ceil(tenants.length / settings.promotionConcurrency) * meanCutoverMs) / 1000),
    gates: gates.gates,
    gatesOpen: gates.open,
    /** Would a promote be refused now (an admin may override the gates' part with a reason). */
    blockers,
  };
}

/**
 * Starts promoting cohort `ordinal`: a `promotion` row, its tenants in order, one audit event
 * (and a second, `cohorts.promotion.override`, when an admin promotes past a gate), and a wake-up
 * for the workers. Refused while a gate fails or is inconclusive, with each gate's reason.
 */
export async function promote(actor: Actor, input: TPromoteInput) {
  const cohort = await cohortOf(input.planId, input.ordinal);
  const settings = await settingsOf(input.planId);
  const gates = await evaluateCohortGates(input.planId, input.ordinal);
  const notPassing = gates.gates.filter((g) => g.verdict !== "pass");
  if (notPassing.length > 0) {
    if (!input.overrideReason) {
      throw new AppError(
        "PRECONDITION_FAILED",
        `Cohort ${cohort.ordinal} (${cohort.label}) cannot be promoted now. ${notPassing.map(gateLine).join(" ")} ` +
          "Wait for the gates to pass (the cohorts page shows each with its evidence); an admin may override with a reason.",
      );
    }
    if (actor.role !== "admin") {
      throw new AppError(
        "FORBIDDEN",
        `Only an admin may promote past a gate that does not pass (${notPassing.map((g) => g.id).join(", ")}): ask one, or wait for the gates.`,
      );
    }
  }
  const candidates = await promotionCandidates(input.planId, input.ordinal);
  if (candidates.length === 0) {
    throw new AppError(
      "PRECONDITION_FAILED",
      `Every tenant of cohort ${cohort.ordinal} (${cohort.label}) is on a shard or cutting over already: there is nothing to promote.`,
    );
  }
  try {
    return await db().$transaction(
      async (tx) => {
        await lockPlanForControl(tx, input.planId);
        const movement = await tx.dataMovement.findUnique({
          where: { planId: input.planId },
          select: { status: true },
        });
        if (movement?.status !== "running" && movement?.status !== "paused") {
          throw new AppError(
            "PRECONDITION_FAILED",
            `The plan's data movement is ${movement?.status ?? "not started"}: a promotion's cutovers need it running (start or resume it on Backfill & CDC).`,
          );
        }
        const row = await tx.promotion.create({
          data: {
            planId: input.planId,
            ordinal: input.ordinal,
            requestedById: actor.id,
            requestedByEmail: actor.email,
            reason: input.reason,
            overrideReason: notPassing.length > 0 ? (input.overrideReason ?? null) : null,
            overriddenGates: notPassing.map((g) => g.id),
            concurrency: settings.promotionConcurrency,
            tenantsTotal: candidates.length,
          },
          select: { id: true },
        });
        for (let i = 0; i < candidates.length; i += 5_000) {
          await tx.promotionTenant.createMany({
            data: candidates.slice(i, i + 5_000).map((c, j) => ({
              promotionId: row.id,
              tenantKey: c.tenant,
              position: i + j + 1,
              rows: c.rows,
            })),
          });
        }
        const judgements = gates.gates.map((g) => ({
          id: g.id,
          verdict: g.verdict,
          value: g.value,
          threshold: g.threshold,
          reason: g.reason,
        }));
        await appendAuditEvent(tx, {
          actor,
          action: "cohorts.promote",
          target: { type: "promotion", id: row.id },
          planId: input.planId,
          after: {
            cohort: cohort.ordinal,
            label: cohort.label,
            tenants: candidates.length,
            rows: candidates.reduce((n, c) => n + c.rows, 0),
            concurrency: settings.promotionConcurrency,
            gates: judgements,
          },
          reason: input.reason,
        });
        if (notPassing.length > 0) {
          await appendAuditEvent(tx, {
            actor,
            action: "cohorts.promotion.override",
            target: { type: "promotion", id: row.id },
            planId: input.planId,
            after: { cohort: cohort.ordinal, overridden: judgements.filter((j) => j.verdict !== "pass") },
            reason: input.overrideReason,
          });
        }
        await tx.$executeRawUnsafe(NOTIFY_ENGINE_SQL, input.planId);
        return { promotionId: row.id, tenants: candidates.length };
      },
      { timeout: 60_000, maxWait: 10_000 },
    );
  } catch (error) {
    if (isOneInFlight(error)) {
      const other = await promotionInFlight(input.planId);
      throw new AppError(
        "CONFLICT",
        `Cohort ${other?.ordinal ?? "?"}'s promotion is ${other?.status ?? "in flight"}: one promotion per plan at a time — wait for it to end, or stop it.`,
        { cause: error },
      );
    }
    throw error;
  }
}

/** The partial unique index `promotion_one_in_flight` refused a second promotion in flight. */
function isOneInFlight(error: unknown): boolean {
  const e = error as { code?: string; message?: string; meta?: unknown };
  return (
    e.code === "P2002" ||
    String(e.message ?? "").includes("promotion_one_in_flight") ||
    JSON.stringify(e.meta ?? {}).includes("promotion_one_in_flight")
  );
}

type Tx = Prisma.TransactionClient;

async function lockPromotion(tx: Tx, promotionId: string) {
  const [row] = await tx.$queryRaw<{ plan_id: string; ordinal: number; status: PromotionStatus }[]>`
    select plan_id::text, ordinal, status from promotion where id = ${promotionId}::uuid for update`;
  if (!row)
    throw new AppError("NOT_FOUND", "No such promotion: it may have been removed, or the link is wrong.");
  return row;
}

/** Moves a promotion by an operator's event, audited; the runner sees it before its next wave. */
async function controlPromotion(
  actor: Actor,
  input: TPromotionControlInput,
  event: Extract<PromotionEvent, "pause" | "resume" | "stop">,
) {
  return db().$transaction(async (tx) => {
    const row = await lockPromotion(tx, input.promotionId);
    const next = nextPromotionStatus(row.status, event);
    if (!next.ok) throw new AppError("CONFLICT", next.reason);
    await tx.promotion.update({
      where: { id: input.promotionId },
      data: {
        status: next.to,
        updatedAt: new Date(),
        ...(event === "stop" ? { stoppedBy: "operator" } : {}),
      },
    });
    await appendAuditEvent(tx, {
      actor,
      action: `cohorts.promotion.${event}`,
      target: { type: "promotion", id: input.promotionId },
      planId: row.plan_id,
      before: { status: row.status },
      after: { status: next.to, cohort: row.ordinal },
      reason: input.reason,
    });
    await tx.$executeRawUnsafe(NOTIFY_ENGINE_SQL, row.plan_id);
    return { promotionId: input.promotionId, status: next.to };
  });
}

export const pausePromotion = (actor: Actor, input: TPromotionControlInput) =>
  controlPromotion(actor, input, "pause");
export const resumePromotion = (actor: Actor, input: TPromotionControlInput) =>
  controlPromotion(actor, input, "resume");
export const stopPromotion = (actor: Actor, input: TPromotionControlInput) =>
  controlPromotion(actor, input, "stop");

/**
 * Asks again for one aborted tenant of a promotion — or one it cut over that is back on legacy
 * (rolled back), once the breaker is armed again: it goes back to the promotion's work list, and
 * an ended promotion reopens (running) to cut it over, judging the gates again first.
 */
export async function retryTenant(actor: Actor, input: TRetryTenantInput) {
  const judged = await reopeningGates(input);
  try {
    return await retryTenantTx(actor, input, judged);
  } catch (error) {
    // Another promotion of the plan committed after this one looked for it: the index refused the
    // reopening (nothing was written).
    if (!isOneInFlight(error)) throw error;
    const promotion = await db().promotion.findUnique({
      where: { id: input.promotionId },
      select: { planId: true },
    });
    const other = promotion ? await promotionInFlight(promotion.planId) : null;
    throw new AppError(
      "CONFLICT",
      `Cohort ${other?.ordinal ?? "?"}'s promotion is ${other?.status ?? "in flight"}: one promotion per plan at a time — retry this tenant when it has ended.`,
      { cause: error },
    );
  }
}

/**
 * A retry that reopens an ended promotion with tenants it never asked for (a gate stopped it, or an
 * operator did) resumes the whole cohort, not one tenant — and the driver stops only on a gate that
 * FAILS. So it is judged as promote() is: refused while a gate the promotion's admin did not
 * override does not pass (fails or cannot see). Returns the status the judgement was made for
 * (null: none needed), which the transaction checks it still finds.
 */
async function reopeningGates(input: TRetryTenantInput): Promise<PromotionStatus | null> {
  const promotion = await db().promotion.findUnique({
    where: { id: input.promotionId },
    select: { planId: true, ordinal: true, status: true, overriddenGates: true },
  });
  if (!promotion || !PROMOTION_ENDED.includes(promotion.status as PromotionStatus)) return null;
  const others = await db().promotionTenant.count({
    where: { promotionId: input.promotionId, status: "pending", tenantKey: { not: input.tenantKey } },
  });
  if (others === 0) return null;
  const overridden = Array.isArray(promotion.overriddenGates) ? promotion.overriddenGates : [];
  const gates = await evaluateCohortGates(promotion.planId, promotion.ordinal);
  const notPassing = gates.gates.filter((g) => g.verdict !== "pass" && !overridden.includes(g.id));
  if (notPassing.length > 0) {
    throw new AppError(
      "PRECONDITION_FAILED",
      `Retrying tenant "${input.tenantKey}" would reopen cohort ${promotion.ordinal}'s promotion and ask for its ${others} tenant${others === 1 ? "" : "s"} not asked yet, but ${notPassing.map(gateLine).join(" ")} ` +
        "Wait for the gates to pass, or promote the cohort again (an admin may override with a reason).",
    );
  }
  return promotion.status as PromotionStatus;
}

async function retryTenantTx(actor: Actor, input: TRetryTenantInput, judgedAt: PromotionStatus | null) {
  return db().$transaction(async (tx) => {
    const row = await lockPromotion(tx, input.promotionId);
    const tenant = await tx.promotionTenant.findUnique({
      where: { promotionId_tenantKey: { promotionId: input.promotionId, tenantKey: input.tenantKey } },
    });
    if (!tenant) {
      throw new AppError(
        "NOT_FOUND",
        `Tenant "${input.tenantKey}" is not part of this promotion: check the key.`,
      );
    }
    const back =
      tenant.status === "done"
        ? (await backOnLegacy([input.promotionId])).get(backOnLegacyKey(input.promotionId, input.tenantKey))
        : undefined;
    if (tenant.status !== "aborted" && !back) {
      throw new AppError(
        "CONFLICT",
        `Tenant "${input.tenantKey}" is ${tenant.status === "done" ? "on its shard" : tenant.status} in this promotion: only an aborted tenant, or one rolled back to legacy, is retried.`,
      );
    }
    if (back) {
      // Cutting a rolled-back tenant over again while the breaker is not armed would put it on a
      // shard with no automatic rollback to protect it (and a trip in flight refuses cutovers).
      const newest = await tx.breakerTrip.findFirst({
        where: { planId: row.plan_id },
        orderBy: { createdAt: "desc" },
        select: { status: true },
      });
      const breaker = planBreakerState(newest);
      if (breaker !== "armed") {
        throw new AppError(
          "PRECONDITION_FAILED",
          `Tenant "${input.tenantKey}" was rolled back to legacy and the breaker is ${breaker.replace("_", " ")}: an admin re-arms it (Breaker) once the cause is fixed, then retry.`,
        );
      }
    }
    let status = row.status;
    if (PROMOTION_ENDED.includes(row.status) && judgedAt === null) {
      const others = await tx.promotionTenant.count({
        where: { promotionId: input.promotionId, status: "pending", tenantKey: { not: input.tenantKey } },
      });
      // It ended after the gates were (not) judged for it: judged again, from the start.
      if (others > 0)
        throw new AppError("CONFLICT", "The promotion ended meanwhile: retry the tenant again.");
    }
    if (PROMOTION_ENDED.includes(row.status)) {
      const other = await tx.promotion.findFirst({
        where: {
          planId: row.plan_id,
          id: { not: input.promotionId },
          status: { notIn: [...PROMOTION_ENDED] },
        },
        select: { ordinal: true, status: true },
      });
      if (other) {
        throw new AppError(
          "CONFLICT",
          `Cohort ${other.ordinal}'s promotion is ${other.status}: retry this tenant when it has ended.`,
        );
      }
      const next = nextPromotionStatus(row.status, "retry");
      if (!next.ok) throw new AppError("CONFLICT", next.reason);
      status = next.to;
      await tx.promotion.update({
        where: { id: input.promotionId },
        data: { status, stoppedBy: null, stopJudgement: Prisma.DbNull, endedAt: null, updatedAt: new Date() },
      });
    } else if (row.status === "stopping") {
      throw new AppError("CONFLICT", "The promotion is stopping: retry the tenant once it has stopped.");
    }
    await tx.promotionTenant.update({
      where: { promotionId_tenantKey: { promotionId: input.promotionId, tenantKey: input.tenantKey } },
      data: { status: "pending", error: null, updatedAt: new Date() },
    });
    await tx.promotion.update({
      where: { id: input.promotionId },
      data: back ? {} : { tenantsAborted: { decrement: 1 } },
    });
    await appendAuditEvent(tx, {
      actor,
      action: "cohorts.promotion.retry",
      target: { type: "tenant", id: input.tenantKey },
      planId: row.plan_id,
      before: {
        tenant: back ? "rolled_back" : "aborted",
        error: back ? back.reason : tenant.error,
        promotion: row.status,
      },
      after: { tenant: "pending", promotion: status, promotionId: input.promotionId },
      reason: input.reason,
    });
    await tx.$executeRawUnsafe(NOTIFY_ENGINE_SQL, row.plan_id);
    return { promotionId: input.promotionId, status };
  });
}

/**
 * The plan's promotions, newest first, each with its tenants in order and their live cutover step
 * (the attempt the promotion asked for), failures with their reason.
 */
export async function listPromotions(input: TPromotionsInput) {
  const promotions = await db().promotion.findMany({
    where: { planId: input.planId, ...(input.promotionId ? { id: input.promotionId } : {}) },
    orderBy: { createdAt: "desc" },
    take: input.promotionId ? 1 : input.limit,
  });
  const ids = promotions.map((p) => p.id);
  const tenants = ids.length
    ? await db().$queryRaw<
        {
          promotion_id: string;
          tenant_key: string;
          position: number;
          rows: number;
          status: string;
          attempts: number;
          error: string | null;
          cutover_id: string | null;
          cutover_status: string | null;
          freeze_ms: number | null;
        }[]
      >`
        select p.promotion_id::text, p.tenant_key, p.position, p.rows, p.status, p.attempts, p.error,
               p.cutover_id::text, c.status as cutover_status,
               (extract(epoch from (c.freeze_ended_at - c.freeze_started_at)) * 1000)::float8 as freeze_ms
        from promotion_tenant p left join tenant_cutover c on c.id = p.cutover_id
        where p.promotion_id = any(${ids}::uuid[])
        order by p.promotion_id, p.position`
    : [];
  const rolledBack = await backOnLegacy(ids);
  return promotions.map((p) => {
    const own = tenants
      .filter((t) => t.promotion_id === p.id)
      .map((t) => {
        const back = rolledBack.get(backOnLegacyKey(p.id, t.tenant_key));
        return back ? { ...t, status: "rolled_back", error: back.reason } : t;
      });
    return {
      id: p.id,
      ordinal: p.ordinal,
      status: p.status as PromotionStatus,
      requestedByEmail: p.requestedByEmail,
      reason: p.reason,
      overrideReason: p.overrideReason,
      concurrency: p.concurrency,
      counts: {
        total: own.length,
        pending: own.filter((t) => t.status === "pending").length,
        inFlight: own.filter((t) => t.status === "requested").length,
        done: own.filter((t) => t.status === "done").length,
        aborted: own.filter((t) => t.status === "aborted").length,
        /** Cut over by this promotion, on legacy now (the breaker, or a person, moved it back). */
        rolledBack: own.filter((t) => t.status === "rolled_back").length,
      },
      stoppedBy: p.stoppedBy,
      stopJudgement: p.stopJudgement as Judgement | null,
      error: p.error,
      worker: p.worker,
      createdAt: p.createdAt,
      startedAt: p.startedAt,
      endedAt: p.endedAt,
      tenants: own.map((t) => ({
        tenant: t.tenant_key,
        position: t.position,
        rows: t.rows,
        status: t.status,
        cutoverStatus: t.cutover_status,
        attempts: t.attempts,
        error: t.error,
        freezeMs: t.freeze_ms === null ? null : Math.round(t.freeze_ms),
      })),
    };
  });
}

export type PromotionListing = Awaited<ReturnType<typeof listPromotions>>;
