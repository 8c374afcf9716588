// The worker's side of a promotion (issue 14): drives every promotion no live worker drives,
// from the `promotion` rows alone, so a SIGKILLed worker's promotion is taken over by the next.
//
// Exactly one driver per promotion: the driver holds a session advisory lock (class 7363900, the
// promotion's id) on a connection of its own for as long as it drives; the lock dies with the
// process, and the next tick of any worker takes the promotion over. Everything the driver knows
// is re-read from the store each round: its status (operators pause and stop it by writing it),
// the tenants' rows, and the cutover attempts it asked for.
//
// Each round: settle the tenants whose cutover ended (done, or aborted with its reason — an aborted
// tenant stays on legacy and waits for an operator's retry); while running, judge the cohort's
// gates between waves (every `concurrency` completions, at least every few seconds) and stop by
// itself when one turns to fail; then request cutovers for the next pending tenants, in order, up
// to `concurrency` in flight. A cutover is requested as a person would (requestCutover), so it is
// audited and checked the same way; if the worker died after a request committed but before the
// tenant's row said so, the request is refused as in flight and the attempt is adopted.
import os from "node:os";
import pg from "pg";
import { db } from "../../db";
import { evidenceHref, type Judgement } from "../../engine/gates/judgement";
import { planBreakerState } from "../../engine/state/breaker";
import {
  nextPromotionStatus,
  PROMOTION_DRIVEN,
  type PromotionEvent,
  type PromotionStatus,
} from "../../engine/state/promotion";
import { AppError } from "../../errors";
import type { Prisma } from "../../generated/prisma/client";
import type { Actor } from "../actor";
import { requestCutover } from "../routing/cutover";
import { backOnLegacy } from "./back-on-legacy";
import { evaluateCohortGates } from "./gates";

export const PROMOTION_LOCK_CLASS = 7363900;
const CUTOVER_IN_FLIGHT = ["requested", "prechecking", "fencing", "draining", "flipped", "aborting"];
/** Gates are judged at least this often while cutovers are requested. */
const GATE_EVERY_MS = 5_000;
const ROUND_MS = 500;

interface PromotionRow {
  id: string;
  planId: string;
  ordinal: number;
  status: PromotionStatus;
  requestedById: string | null;
  requestedByEmail: string;
  reason: string;
  concurrency: number;
  overriddenGates: unknown;
  stoppedBy: string | null;
  worker: string | null;
  createdAt: Date;
  startedAt: Date | null;
  tenantsDone: number;
  tenantsAborted: number;
}

async function readPromotion(id: string): Promise<PromotionRow | null> {
  const row = await db().promotion.findUnique({ where: { id } });
  return row ? { ...row, status: row.status as PromotionStatus } : null;
}

/** Moves the promotion by `event` if it is still in the status this driver read; false if not. */
async function advance(
  row: PromotionRow,
  event: PromotionEvent,
  data: Omit<Prisma.PromotionUpdateManyMutationInput, "status"> = {},
): Promise<boolean> {
  const next = nextPromotionStatus(row.status, event, row.stoppedBy);
  if (!next.ok) return false;
  const ended = next.to === "done" || next.to === "stopped" || next.to === "failed";
  const updated = await db().promotion.updateMany({
    where: { id: row.id, status: row.status },
    data: { ...data, status: next.to, updatedAt: new Date(), ...(ended ? { endedAt: new Date() } : {}) },
  });
  return updated.count === 1;
}

async function engineEvent(planId: string, level: "info" | "warn" | "error", message: string) {
  await db().engineEvent.create({ data: { planId, level, source: "promotion", message } });
}

/** Tenants whose attempt ended: done, or aborted with its reason. Returns how many ended. */
async function settle(promotionId: string): Promise<number> {
  const ended = await db().$queryRaw<{ tenant_key: string; status: string; error: string | null }[]>`
    update promotion_tenant p
    set status = case when c.status = 'done' then 'done' else 'aborted' end,
        error = case when c.status = 'done' then null
                     else coalesce(c.error, 'The cutover was aborted (no reason recorded).') end,
        updated_at = now()
    from tenant_cutover c
    where p.promotion_id = ${promotionId}::uuid and p.status = 'requested' and c.id = p.cutover_id
      and c.status in ('done', 'aborted')
    returning p.tenant_key, p.status, p.error`;
  return ended.length;
}

async function counts(promotionId: string) {
  const rows = await db().promotionTenant.groupBy({
    by: ["status"],
    where: { promotionId },
    _count: true,
  });
  const of = (s: string) => rows.find((r) => r.status === s)?._count ?? 0;
  // A tenant it cut over that the breaker (or a person) has since moved back is not on its shard:
  // counted apart, so the promotion never reports it as done (back-on-legacy.ts).
  const rolledBack = of("done") > 0 ? (await backOnLegacy([promotionId])).size : 0;
  return {
    pending: of("pending"),
    inFlight: of("requested"),
    done: of("done") - rolledBack,
    aborted: of("aborted"),
    rolledBack,
  };
}

/**
 * Why the tenant is no longer in the cohort being promoted (an operator held it on legacy, or moved
 * it to a later cohort, after the promote), or null while it is. A tenant with no member row is a
 * census newcomer, in the last cohort: a candidate only when that was promoted, so still in.
 */
async function leftTheCohort(row: PromotionRow, tenantKey: string): Promise<string | null> {
  const member = await db().cohortMember.findUnique({
    where: { planId_tenantKey: { planId: row.planId, tenantKey } },
    select: { ordinal: true, assignedByEmail: true },
  });
  if (!member || (member.ordinal !== null && member.ordinal <= row.ordinal)) return null;
  return `Tenant ${tenantKey} is no longer in cohort ${row.ordinal}: ${member.assignedByEmail} ${member.ordinal === null ? "held it on legacy (in no cohort)" : `moved it to cohort ${member.ordinal}`} after the promotion was asked for, so it was not cut over.`;
}

/** Asks for one tenant's cutover; adopts an attempt already in flight (a request before a crash). */
async function requestTenant(row: PromotionRow, tenantKey: string, log: (m: string) => void) {
  const left = await leftTheCohort(row, tenantKey);
  if (left) {
    log(`[promotion ${row.id}] ${left}`);
    await db().promotionTenant.update({
      where: { promotionId_tenantKey: { promotionId: row.id, tenantKey } },
      data: { status: "aborted", error: left, updatedAt: new Date() },
    });
    return;
  }
  const actor: Actor = {
    id: row.requestedById,
    email: row.requestedByEmail,
    role: "system",
    requestId: `promotion-${row.id}`,
  };
  const key = { promotionId_tenantKey: { promotionId: row.id, tenantKey } };
  try {
    // To its shard, always: a request without a direction goes the way the tenant is not, and a
    // tenant already on its shard (its attempt finished before a SIGKILL let this row say so, or a
    // person moved it) would be sent back to legacy in the promotion's name. Refused instead: done.
    const { cutoverId } = await requestCutover(actor, {
      planId: row.planId,
      tenantKey,
      direction: "to-shard",
      reason: `Promotion of cohort ${row.ordinal}: ${row.reason}`,
    });
    await db().promotionTenant.update({
      where: key,
      data: {
        status: "requested",
        cutoverId,
        attempts: { increment: 1 },
        error: null,
        updatedAt: new Date(),
      },
    });
    return;
  } catch (error) {
    if (!(error instanceof AppError)) throw error;
    const inFlight = await db().tenantCutover.findFirst({
      where: { planId: row.planId, tenantKey, status: { in: CUTOVER_IN_FLIGHT } },
      orderBy: { createdAt: "desc" },
      select: { id: true },
    });
    if (inFlight) {
      await db().promotionTenant.update({
        where: key,
        data: { status: "requested", cutoverId: inFlight.id, updatedAt: new Date() },
      });
      return;
    }
    const route = await db().tenantRoute.findUnique({
      where: { planId_tenantKey: { planId: row.planId, tenantKey } },
      select: { ownerDatabaseId: true },
    });
    if (route?.ownerDatabaseId) {
      // On a shard already (its attempt ended before this driver saw it, or a person moved it).
      await db().promotionTenant.update({ where: key, data: { status: "done", updatedAt: new Date() } });
      return;
    }
    log(`[promotion ${row.id}] tenant ${tenantKey} was refused: ${error.message}`);
    await db().promotionTenant.update({
      where: key,
      data: { status: "aborted", error: error.message.slice(0, 2_000), updatedAt: new Date() },
    });
  }
}

/**
 * A trip made since the promotion was asked for that still stands (the breaker not re-armed), as the
 * breaker gate's failing judgement. Checked before every wave, and never overridden: an admin's
 * override covers what the gates showed when they promoted, not a trip that came after, and
 * between two gate judgements (up to GATE_EVERY_MS) the driver would otherwise go on asking —
 * refused while the rollback runs (every pending tenant aborted), accepted once it has rolled back
 * and left the breaker disarmed.
 */
async function tripSinceStart(row: PromotionRow): Promise<(Judgement & { href: string }) | null> {
  if (!row.startedAt) return null;
  const trip = await db().breakerTrip.findFirst({
    where: { planId: row.planId },
    orderBy: { createdAt: "desc" },
    select: { status: true, trigger: true, requestedByEmail: true, createdAt: true },
  });
  // Since the promote (when the gates an admin overrode were judged), not the driver's claim: a
  // trip in between was neither what the override covered nor seen as new.
  if (!trip || planBreakerState(trip) === "armed" || trip.createdAt < row.createdAt) return null;
  const evidence = { chart: "cohorts" as const, from: row.createdAt, to: new Date() };
  return {
    id: "breaker",
    title: "No breaker trip",
    verdict: "fail",
    value: 1,
    threshold: 0,
    unit: "trips",
    reason: `The breaker tripped at ${trip.createdAt.toISOString()} (${trip.trigger === "manual" ? `by ${trip.requestedByEmail}` : `rule ${trip.trigger}`}) after this promotion was asked for, and is ${trip.status}: re-arm it once the cause is fixed, then retry the promotion's tenants.`,
    evidence,
    href: evidenceHref(row.planId, evidence),
  };
}

interface Driver {
  finished: boolean;
  stop(): Promise<void>;
}

/** Drives one promotion while `lock` (a session holding its advisory lock) lives. */
function drive(id: string, lock: pg.Client, options: { worker: string; log: (m: string) => void }): Driver {
  const { log } = options;
  let stopping = false;
  let wake: (() => void) | null = null;
  const driver: Driver = {
    finished: false,
    async stop() {
      stopping = true;
      wake?.();
      await done;
    },
  };
  const pause = () =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ROUND_MS);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  const run = async () => {
    let lastJudgedAt = 0;
    let endedSinceJudged = Number.POSITIVE_INFINITY;
    while (!stopping) {
      // The lock is held by this connection: if it died, so did the lock, and another worker may
      // drive the promotion now — this driver stops (the query throws).
      await lock.query("select 1");
      const row = await readPromotion(id);
      if (!row || !PROMOTION_DRIVEN.includes(row.status)) return;
      if (row.status === "requested") {
        if (await advance(row, "claimed", { startedAt: new Date(), worker: options.worker })) {
          await engineEvent(
            row.planId,
            "info",
            `Promotion of cohort ${row.ordinal} started on ${options.worker} (${row.concurrency} at a time).`,
          );
        }
        continue;
      }
      if (row.worker !== options.worker) {
        await db().promotion.updateMany({ where: { id }, data: { worker: options.worker } });
      }
      endedSinceJudged += await settle(id);
      const c = await counts(id);
      if (c.done !== row.tenantsDone || c.aborted !== row.tenantsAborted) {
        await db().promotion.updateMany({
          where: { id },
          data: { tenantsDone: c.done, tenantsAborted: c.aborted, updatedAt: new Date() },
        });
      }

      if (row.status === "stopping") {
        if (c.inFlight === 0 && (await advance(row, "drained"))) {
          await engineEvent(
            row.planId,
            row.stoppedBy === "gate" ? "warn" : "info",
            `Promotion of cohort ${row.ordinal} ${row.stoppedBy === "gate" ? "stopped by a failing gate" : "stopped"}: ${c.done} tenants on their shards, ${c.aborted} aborted, ${c.pending} not asked${c.rolledBack ? `, ${c.rolledBack} rolled back to legacy` : ""}.`,
          );
        }
      } else if (row.status === "running") {
        if (c.pending === 0 && c.inFlight === 0) {
          if (await advance(row, "finished")) {
            await engineEvent(
              row.planId,
              c.aborted || c.rolledBack ? "warn" : "info",
              `Promotion of cohort ${row.ordinal} done: ${c.done} tenants on their shards${c.aborted ? `, ${c.aborted} aborted and still on legacy (retry them on the cohorts page)` : ""}${c.rolledBack ? `, ${c.rolledBack} rolled back to legacy (retry them once the breaker is re-armed)` : ""}.`,
            );
          }
          continue;
        }
        const free = row.concurrency - c.inFlight;
        if (c.pending > 0 && free > 0) {
          // Between waves: a gate that turns to fail stops the promotion (overridden gates excepted).
          // A trip since the start stops it before every wave, override or not (tripSinceStart).
          const tripped = await tripSinceStart(row);
          if (tripped || endedSinceJudged >= row.concurrency || Date.now() - lastJudgedAt >= GATE_EVERY_MS) {
            const gates = tripped
              ? { gates: [] }
              : await evaluateCohortGates(row.planId, row.ordinal, new Date(), row.startedAt);
            lastJudgedAt = Date.now();
            endedSinceJudged = 0;
            const failing =
              tripped ??
              (gates.gates.find(
                (g) =>
                  g.verdict === "fail" &&
                  !(Array.isArray(row.overriddenGates) && row.overriddenGates.includes(g.id)),
              ) as (Judgement & { href: string }) | undefined);
            if (failing) {
              row.stoppedBy = "gate";
              if (
                await advance(row, "gate-failed", {
                  stoppedBy: "gate",
                  stopJudgement: failing as unknown as Prisma.InputJsonValue,
                })
              ) {
                log(`[promotion ${id}] stopping: ${failing.title} failed: ${failing.reason}`);
              }
              continue;
            }
          }
          const next = await db().promotionTenant.findMany({
            where: { promotionId: id, status: "pending" },
            orderBy: { position: "asc" },
            take: free,
            select: { tenantKey: true },
          });
          for (const t of next) {
            if (stopping) break;
            // A pause or stop acknowledged to an operator mid-wave holds from the next tenant on:
            // the status is read again before each request, not once per wave.
            if ((await readPromotion(id))?.status !== "running") break;
            await requestTenant(row, t.tenantKey, log);
          }
          continue;
        }
      }
      await pause();
    }
  };

  const done = run()
    .catch(async (error) => {
      // The promotion stays as stored: this or another worker takes it over at a later tick.
      log(`[promotion ${id}] driver failed, retried at a later tick: ${(error as Error).message}`);
      await db()
        .promotion.updateMany({ where: { id }, data: { error: (error as Error).message.slice(0, 2_000) } })
        .catch(() => {});
    })
    .finally(async () => {
      driver.finished = true;
      await lock.end().catch(() => {});
    });
  return driver;
}

export interface PromotionWatch {
  /** Looks for promotions to drive now (after a NOTIFY). */
  poke(): void;
  stop(): Promise<void>;
}

/** Every second (and when poked): take over every promotion no live worker drives. */
export function startPromotionWatch(options: {
  controlPlaneUrl: string;
  log?: (m: string) => void;
  intervalMs?: number;
  worker?: string;
}): PromotionWatch {
  const log = options.log ?? ((m: string) => console.log(m));
  const worker = options.worker ?? `${os.hostname()}:${process.pid}`;
  const drivers = new Map<string, Driver>();
  let stopped = false;
  let ticking: Promise<void> = Promise.resolve();

  const tick = async () => {
    for (const [id, d] of drivers) if (d.finished) drivers.delete(id);
    const rows = await db().promotion.findMany({
      where: { status: { in: [...PROMOTION_DRIVEN] } },
      orderBy: { createdAt: "asc" },
      select: { id: true },
    });
    for (const { id } of rows) {
      if (stopped || drivers.has(id)) continue;
      const lock = new pg.Client({
        connectionString: options.controlPlaneUrl,
        application_name: "shardshift-promotion",
      });
      lock.on("error", () => {});
      await lock.connect();
      const got = await lock.query<{ ok: boolean }>("select pg_try_advisory_lock($1, hashtext($2)) as ok", [
        PROMOTION_LOCK_CLASS,
        id,
      ]);
      if (!got.rows[0]?.ok) {
        await lock.end().catch(() => {});
        continue;
      }
      drivers.set(id, drive(id, lock, { worker, log }));
    }
  };
  const runTick = () => {
    ticking = ticking.then(() =>
      stopped ? undefined : tick().catch((e) => log(`[promotion] ${(e as Error).message}`)),
    );
  };
  const timer = setInterval(runTick, options.intervalMs ?? 1_000);
  runTick();
  return {
    poke: runTick,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await ticking;
      await Promise.all([...drivers.values()].map((d) => d.stop()));
      drivers.clear();
    },
  };
}
