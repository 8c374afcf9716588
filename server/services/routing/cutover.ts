// Cutover requests, their dry run and their history: the control-plane side of moving one tenant's
// writes (docs/cutover.md). A request only writes a 'requested' attempt (audited) and wakes the
// workers; a worker claims it and runs the protocol (server/engine/cutover/run-cutover.ts). The
// checks here are the ones a person can act on before asking; the runner checks again when it
// starts, since minutes may pass and the answer may change.
import { db } from "../../db";
import {
  FORWARD_LAG_METRIC,
  feedingStream,
  lagBlocker,
  REVERSE_LAG_METRIC,
  recentLagMs,
} from "../../engine/cutover/precheck";
import { hashPlacement } from "../../engine/router/placement";
import { NOTIFY_ENGINE_SQL } from "../../engine/runtime/wake";
import type { CutoverDirection } from "../../engine/state/cutover";
import { AppError } from "../../errors";
import type { TListCutoversInput, TRequestCutoverInput } from "../../schemas/routing";
import type { Actor } from "../actor";
import { appendAuditEvent } from "../audit/audit-log";
import { breakerBlocksCutover } from "../breaker/breaker";
import { lockPlanForControl } from "../movement/cancel-guard";

const DEFAULT_BUDGET_MS = 2_000;
const IN_FLIGHT = ["requested", "prechecking", "fencing", "draining", "flipped", "aborting"];

interface Side {
  id: string | null;
  name: string;
}

interface CutoverShape {
  tenantKey: string;
  direction: CutoverDirection;
  /** Database ids as stored: null is legacy. */
  fromId: string | null;
  toId: string | null;
  from: Side;
  to: Side;
  budgetMs: number;
  /** Stop a request. */
  blockers: string[];
  /** Stops the runner's pre-check if it still stands when the runner starts. */
  lagProblem: string | null;
  feedingLagMs: number | null;
  forwardLagMs: number | null;
  reverseLagMs: number | null;
}

/** Where the tenant is, where it would go and what stops it: the request's and the preview's one reading. */
async function shapeCutover(
  planId: string,
  tenantKey: string,
  options: { direction?: CutoverDirection; budgetMs?: number } = {},
): Promise<CutoverShape> {
  const plan = await db().plan.findUnique({
    where: { id: planId },
    select: {
      settings: true,
      sourceDatabase: { select: { id: true, name: true } },
      shards: { orderBy: { ordinal: "asc" }, select: { database: { select: { id: true, name: true } } } },
      movement: { select: { status: true } },
    },
  });
  if (!plan) {
    throw new AppError(
      "NOT_FOUND",
      "This plan does not exist (it may have been deleted). Go back to the plans list.",
    );
  }
  const blockers: string[] = [];
  const settings = plan.settings as { freezeBudgetMs?: unknown };
  const budgetMs =
    options.budgetMs ??
    (typeof settings.freezeBudgetMs === "number" ? settings.freezeBudgetMs : DEFAULT_BUDGET_MS);

  const [route, census, inFlight, forwardLagMs, reverseLagMs, breaker] = await Promise.all([
    db().tenantRoute.findUnique({ where: { planId_tenantKey: { planId, tenantKey } } }),
    db().tenantCensus.findFirst({ where: { planId, tenantKey }, select: { tenantKey: true } }),
    db().tenantCutover.findFirst({
      where: { planId, tenantKey, status: { in: IN_FLIGHT } },
      select: { id: true, status: true, direction: true, requestedByEmail: true, createdAt: true },
    }),
    recentLagMs(planId, FORWARD_LAG_METRIC),
    recentLagMs(planId, REVERSE_LAG_METRIC),
    breakerBlocksCutover(db(), planId),
  ]);
  if (breaker) blockers.push(breaker);

  const shardNames = new Map(plan.shards.map((s) => [s.database.id, s.database.name]));
  const nameOf = (id: string | null) => (id === null ? plan.sourceDatabase.name : (shardNames.get(id) ?? id));
  const ownerId = route?.ownerDatabaseId ?? null;
  const direction: CutoverDirection = options.direction ?? (ownerId === null ? "to-shard" : "to-legacy");
  let toId: string | null = null;
  if (direction === "to-shard") {
    if (plan.shards.length === 0) blockers.push("The plan has no shards to cut a tenant over to.");
    else {
      const ordinal = hashPlacement(plan.shards.length).shardFor(tenantKey);
      toId = plan.shards[ordinal]?.database.id ?? null;
    }
  }
  if (direction === "to-shard" && ownerId !== null) {
    blockers.push(
      `Tenant ${tenantKey} is already on ${nameOf(ownerId)}: cut it over to legacy ("to-legacy") first.`,
    );
  }
  if (direction === "to-legacy" && ownerId === null) {
    blockers.push(`Tenant ${tenantKey} is already on legacy: there is nothing to take back.`);
  }

  if (!plan.movement) {
    blockers.push(
      "The plan's data movement has not started: start it (Backfill & CDC) so the shards hold the tenant's rows and replication keeps them current.",
    );
  } else if (plan.movement.status !== "running" && plan.movement.status !== "paused") {
    blockers.push(
      `The plan's data movement is ${plan.movement.status}: a cutover needs it running (resume it, or start it again).`,
    );
  }
  if (!route && !census) {
    blockers.push(
      `Tenant ${tenantKey} is not known to this plan: it has no rows in the census of its sharded tables and no route. Check the key (its text form, e.g. 42).`,
    );
  }
  if (inFlight) {
    blockers.push(
      `A ${inFlight.direction} cutover of tenant ${tenantKey} is already ${inFlight.status} (requested by ${inFlight.requestedByEmail} at ${inFlight.createdAt.toISOString()}): wait for it to end.`,
    );
  }
  if (route?.frozen && !inFlight) {
    blockers.push(
      `Tenant ${tenantKey} is frozen on the routing map by an operator: unfreeze it first, so a cutover's freeze window is its own.`,
    );
  }
  const feedingLagMs = feedingStream(direction).metric === FORWARD_LAG_METRIC ? forwardLagMs : reverseLagMs;
  // The lag is re-read by the runner when it starts (it may be seconds or minutes later): the
  // preview shows it as a blocker, a request is not refused on it.
  const lagProblem = plan.movement ? lagBlocker(direction, feedingLagMs, budgetMs) : null;

  return {
    tenantKey,
    direction,
    fromId: ownerId,
    toId,
    from: { id: ownerId, name: nameOf(ownerId) },
    to: { id: toId, name: nameOf(toId) },
    budgetMs,
    blockers,
    lagProblem,
    feedingLagMs,
    forwardLagMs,
    reverseLagMs,
  };
}

export interface CutoverPreview {
  tenantKey: string;
  direction: CutoverDirection;
  from: Side;
  to: Side;
  budgetMs: number;
  forwardLagMs: number | null;
  reverseLagMs: number | null;
  /** The typical freeze (p50) expected now: see expectedFreeze for what it is based on. */
  expectedFreezeMs: number | null;
  /** The estimate and its basis: recent measured freezes of this plan, or the lag plus a fixed cost. */
  expectedFreeze: FreezeEstimate | null;
  blockers: string[];
}

export interface FreezeEstimate {
  p50Ms: number;
  p99Ms: number;
  /** In words: what the figures are based on. */
  basis: string;
}

/** Recent attempts measured, at most: the estimate follows how cutovers of the plan go now. */
const ESTIMATE_SAMPLE = 50;
/**
 * With no measured attempt: the fence, the sequences' pass, the flip and the unfreeze on top of
 * the drain (one statement or a few round trips each; ~20–60 ms measured under load on 2 cores).
 */
export const FREEZE_FIXED_COST_MS = 100;

function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

/**
 * What a cutover's freeze is expected to be: the freezes (writes stopped → map unfrozen) of the
 * plan's last done attempts in this direction, when there are any; else the feeding stream's lag
 * (the drain waits for it) plus a stated fixed cost. Null when neither is known.
 */
export async function estimateFreeze(
  planId: string,
  direction: CutoverDirection,
  feedingLagMs: number | null,
): Promise<FreezeEstimate | null> {
  const recent = await db().tenantCutover.findMany({
    where: {
      planId,
      direction,
      status: "done",
      freezeStartedAt: { not: null },
      freezeEndedAt: { not: null },
    },
    orderBy: { endedAt: "desc" },
    take: ESTIMATE_SAMPLE,
    select: { freezeStartedAt: true, freezeEndedAt: true },
  });
  const freezes = recent
    .map((r) => (r.freezeEndedAt?.getTime() ?? 0) - (r.freezeStartedAt?.getTime() ?? 0))
    .sort((a, b) => a - b);
  if (freezes.length > 0) {
    return {
      p50Ms: percentile(freezes, 0.5),
      p99Ms: percentile(freezes, 0.99),
      basis: `measured: the last ${freezes.length} ${direction} cutover${freezes.length === 1 ? "" : "s"} of this plan`,
    };
  }
  if (feedingLagMs === null) return null;
  const lag = Math.round(feedingLagMs);
  return {
    p50Ms: lag + FREEZE_FIXED_COST_MS,
    p99Ms: lag + FREEZE_FIXED_COST_MS,
    basis: `estimated: the feeding stream's lag (${lag} ms) plus about ${FREEZE_FIXED_COST_MS} ms for the fence, sequences, flip and unfreeze (no ${direction} cutover of this plan measured yet)`,
  };
}

/** Dry run: what a cutover of this tenant would do now, and what would stop it. Writes nothing. */
export async function previewCutover(input: {
  planId: string;
  tenantKey: string;
  budgetMs?: number;
}): Promise<CutoverPreview> {
  const shape = await shapeCutover(input.planId, input.tenantKey, { budgetMs: input.budgetMs });
  const expectedFreeze = await estimateFreeze(input.planId, shape.direction, shape.feedingLagMs);
  return {
    tenantKey: shape.tenantKey,
    direction: shape.direction,
    from: shape.from,
    to: shape.to,
    budgetMs: shape.budgetMs,
    forwardLagMs: shape.forwardLagMs === null ? null : Math.round(shape.forwardLagMs),
    reverseLagMs: shape.reverseLagMs === null ? null : Math.round(shape.reverseLagMs),
    expectedFreezeMs: expectedFreeze?.p50Ms ?? null,
    expectedFreeze,
    blockers: shape.lagProblem ? [...shape.blockers, shape.lagProblem] : shape.blockers,
  };
}

function isInFlightConflict(error: unknown): boolean {
  const e = error as { code?: string; message?: string; meta?: unknown };
  return (
    e.code === "P2002" ||
    e.code === "23505" ||
    String(e.message ?? "").includes("tenant_cutover_one_in_flight") ||
    JSON.stringify(e.meta ?? {}).includes("tenant_cutover_one_in_flight")
  );
}

/**
 * Asks a worker to cut one tenant over. Refused (nothing written) when a blocker stands; the
 * attempt and its audit event commit together, and the NOTIFY wakes the workers on commit.
 */
export async function requestCutover(
  actor: Actor,
  input: TRequestCutoverInput,
): Promise<{ cutoverId: string }> {
  const shape = await shapeCutover(input.planId, input.tenantKey, {
    direction: input.direction,
    budgetMs: input.budgetMs,
  });
  if (shape.blockers.length > 0) {
    throw new AppError(
      shape.blockers.some((b) => b.includes("is already") && b.includes("cutover"))
        ? "CONFLICT"
        : "PRECONDITION_FAILED",
      `Cannot cut tenant ${input.tenantKey} over: ${shape.blockers.join(" ")}`,
    );
  }
  try {
    return await db().$transaction(
      async (tx) => {
        // The plan's row lock, as a cancel takes it (cancel-guard.ts): a cancel that committed
        // after the check above is seen here, and one that comes after this sees the attempt.
        await lockPlanForControl(tx, input.planId);
        const movement = await tx.dataMovement.findUnique({
          where: { planId: input.planId },
          select: { status: true },
        });
        if (movement?.status !== "running" && movement?.status !== "paused") {
          throw new AppError(
            "PRECONDITION_FAILED",
            `Cannot cut tenant ${input.tenantKey} over: the plan's data movement is ${movement?.status ?? "not started"} (a cutover needs it running).`,
          );
        }
        // Under the plan's lock, which a breaker trip and its freeze take too (docs/breaker.md).
        const breaker = await breakerBlocksCutover(tx, input.planId);
        if (breaker) throw new AppError("CONFLICT", `Cannot cut tenant ${input.tenantKey} over: ${breaker}`);
        const row = await tx.tenantCutover.create({
          data: {
            planId: input.planId,
            tenantKey: shape.tenantKey,
            direction: shape.direction,
            fromDatabaseId: shape.fromId,
            toDatabaseId: shape.toId,
            status: "requested",
            requestedById: actor.id,
            requestedByEmail: actor.email,
            reason: input.reason,
            budgetMs: shape.budgetMs,
            steps: [{ status: "requested", at: new Date().toISOString() }],
          },
          select: { id: true },
        });
        await appendAuditEvent(tx, {
          actor,
          action: "routing.cutover.request",
          target: { type: "tenant_cutover", id: row.id },
          planId: input.planId,
          after: {
            tenant: shape.tenantKey,
            direction: shape.direction,
            from: shape.from.name,
            to: shape.to.name,
            budgetMs: shape.budgetMs,
          },
          reason: input.reason,
        });
        await tx.$executeRawUnsafe(NOTIFY_ENGINE_SQL, input.planId);
        return { cutoverId: row.id };
      },
      { timeout: 15_000, maxWait: 10_000 },
    );
  } catch (error) {
    if (isInFlightConflict(error)) {
      throw new AppError(
        "CONFLICT",
        `A cutover of tenant ${input.tenantKey} was requested meanwhile and is in flight: wait for it to end (see the tenant's cutovers).`,
        { cause: error },
      );
    }
    throw error;
  }
}

export interface CutoverListItem {
  id: string;
  tenantKey: string;
  direction: string;
  status: string;
  fromName: string;
  toName: string;
  requestedByEmail: string;
  reason: string;
  error: string | null;
  /** freeze_started_at → freeze_ended_at; null while open or when nothing was frozen. */
  freezeMs: number | null;
  createdAt: Date;
  endedAt: Date | null;
}

/** The plan's (or one tenant's) cutover attempts, newest first. */
export async function listCutovers(input: TListCutoversInput): Promise<CutoverListItem[]> {
  const plan = await db().plan.findUnique({
    where: { id: input.planId },
    select: {
      sourceDatabase: { select: { name: true } },
      shards: { select: { database: { select: { id: true, name: true } } } },
    },
  });
  if (!plan) {
    throw new AppError(
      "NOT_FOUND",
      "This plan does not exist (it may have been deleted). Go back to the plans list.",
    );
  }
  const names = new Map(plan.shards.map((s) => [s.database.id, s.database.name]));
  const nameOf = (id: string | null) => (id === null ? plan.sourceDatabase.name : (names.get(id) ?? id));
  const rows = await db().tenantCutover.findMany({
    where: { planId: input.planId, ...(input.tenantKey ? { tenantKey: input.tenantKey } : {}) },
    orderBy: { createdAt: input.order === "oldest" ? "asc" : "desc" },
    take: input.limit ?? 50,
  });
  return rows.map((r) => ({
    id: r.id,
    tenantKey: r.tenantKey,
    direction: r.direction,
    status: r.status,
    fromName: nameOf(r.fromDatabaseId),
    toName: nameOf(r.toDatabaseId),
    requestedByEmail: r.requestedByEmail,
    reason: r.reason,
    error: r.error,
    freezeMs:
      r.freezeStartedAt && r.freezeEndedAt ? r.freezeEndedAt.getTime() - r.freezeStartedAt.getTime() : null,
    createdAt: r.createdAt,
    endedAt: r.endedAt,
  }));
}
