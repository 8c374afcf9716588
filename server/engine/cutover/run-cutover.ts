// One cutover attempt, driven to its end by the worker that holds its lock (docs/cutover.md).
//
// Design:
// - Exclusivity: a session advisory lock on the control plane per attempt, held by the runner's
//   own connection for as long as it drives the attempt. A killed worker's lock dies with its
//   connection; the next supervisor tick anywhere takes the attempt over and does what the
//   persisted status says (recoveryFor: abort before the flip, finish from it).
// - Every status change goes through the state machine (cutover-store.ts), with a step entry.
// - Map changes are written through writeRoutingChange with the engine's injected audit writer
//   (a system actor's), each in one transaction with the attempt's status where they belong
//   together: freeze + 'fencing', owner and unfreeze + 'flipped' (the commit point).
// - Fences are brought up to the map with syncPlanFences (a consistent read of every route since
//   the version each database holds), never with a hand-made version: a fence that claimed a map
//   version before it held every change of it would never receive what it missed.
// - Test hook: SHARDSHIFT_CUTOVER_PAUSE_AT=<status> makes the runner wait once it reached that
//   status (before its step's work), so a crash test can kill the worker exactly there.
import pg from "pg";
import type { SourceSchema } from "../analysis/introspect";
import { applyOriginName } from "../cdc/apply-origin";
import { formatLsn, parseLsn } from "../cdc/slot";
import {
  ATTEMPT_CONFLICT_SQLSTATE,
  type AttemptStatusWrite,
  type RoutingAuditDraft,
  writeRoutingChangeAtomic,
} from "../routing/atomic-change";
import { type FenceState, readFenceState, syncFence } from "../routing/fence";
import { holdFenceSync } from "../routing/fence-watch";
import {
  type FencedDatabase,
  installPlanFences,
  loadPlanFences,
  type PlanFences,
  syncPlanFences,
} from "../routing/plan-fences";
import {
  type RouteChange,
  type RoutingAuditWriter,
  type RoutingChangeRecord,
  RoutingChangeRefused,
  type TenantRouteState,
  writeRoutingChange,
} from "../routing/routing-map";
import type { Gate } from "../shared/gate";
import { cutoverPool } from "../sql/pools";
import { type CutoverEvent, cutoverInFlight, nextCutoverStatus, recoveryFor } from "../state/cutover";
import { db } from "../store/db";
import { recordEngineEvent } from "../store/movement-context";
import {
  drainShortfallNote,
  ensureReverseSlot,
  findReverseSlot,
  legacyReverseOrigins,
  REVERSE_STREAM_WAIT_MS,
  reverseLagOnceStreaming,
  reverseOriginName,
  reverseSlotGap,
  waitForOriginProgress,
} from "./cdc-links";
import {
  advanceCutover,
  type CutoverRow,
  CutoverStateConflict,
  type CutoverStep,
  readCutover,
} from "./cutover-store";
import { feedingStream, lagBlocker, recentLagMs } from "./precheck";
import { advanceSequences, SEQUENCE_LEAD, shardedSequences } from "./sequences";

/** Advisory lock class (two-int form) of an attempt: held by the session of the worker driving it. */
export const CUTOVER_LOCK_CLASS = 7_363_800;

export interface CutoverRunOptions {
  /** Names this worker process in the attempt's row. */
  worker: string;
  controlPlaneUrl: string;
  audit: RoutingAuditWriter;
  /**
   * Drafts the audit event of a map change for the one-statement write (atomic-change.ts); without
   * it the map changes go through writeRoutingChange in a Prisma transaction (slower: its locks
   * are held across every round trip).
   */
  auditDraft?: RoutingAuditDraft;
  log: (message: string) => void;
  /**
   * Test hook (SHARDSHIFT_CUTOVER_PAUSE_AT): wait once this status is reached — "<status>" for
   * every attempt, or "<status>:<tenant>,…" for those tenants' attempts only.
   */
  pauseAt?: string | null;
  /**
   * Bounds how many attempts of this worker are inside their freeze at once (the scheduler's
   * gate, cutover-scheduler.ts says why); without it, no bound.
   */
  freezeGate?: Gate;
}

export interface CutoverRun {
  readonly finished: boolean;
  readonly ended: Promise<void>;
  stop(): Promise<void>;
}

/** Whether the test hook holds an attempt of `tenant` at `status`. */
export function pausesAt(spec: string | null | undefined, status: string, tenant: string | null): boolean {
  if (!spec) return false;
  return spec.split(",").some((entry) => {
    const [at, only] = entry.trim().split(":");
    return at === status && (only === undefined || only === tenant);
  });
}

/** Starts driving the attempt if no live worker does (its lock is free); ends at once otherwise. */
export function startCutoverRun(cutoverId: string, options: CutoverRunOptions): CutoverRun {
  let finished = false;
  let stopping = false;
  let wakePause: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    wakePause = resolve;
  });
  const log = (m: string) => options.log(`[cutover ${cutoverId.slice(0, 8)}] ${m}`);
  let tenant: string | null = null;
  const tenantOf = () => tenant;
  const ended = (async () => {
    const lock = new pg.Client({
      connectionString: options.controlPlaneUrl,
      application_name: "shardshift-cutover-lock",
    });
    lock.on("error", () => {});
    await lock.connect();
    try {
      const { rows } = await lock.query<{ ok: boolean }>(
        "select pg_try_advisory_lock($1, hashtext($2)) as ok",
        [CUTOVER_LOCK_CLASS, cutoverId],
      );
      if (!rows[0]?.ok) return; // a live worker drives it
      const attempt = await db().tenantCutover.findUnique({
        where: { id: cutoverId },
        select: { tenantKey: true, planId: true },
      });
      tenant = attempt?.tenantKey ?? null;
      // The fence watch leaves the plan's fences to the movers in flight (fence-watch.ts says why);
      // held until this session ends, with the run.
      if (attempt && !(await holdFenceSync(lock, attempt.planId)))
        log("a fence-watch round held the plan's fences past the wait; fencing alongside it");
      await driveCutover(cutoverId, {
        ...options,
        control: lock,
        timings: {},
        log,
        pause: async (status) => {
          if (!pausesAt(options.pauseAt, status, tenantOf())) return;
          log(`paused at ${status} (SHARDSHIFT_CUTOVER_PAUSE_AT)`);
          await stopped;
          throw new Error("stopped while paused (test hook)");
        },
        stopping: () => stopping,
      });
    } finally {
      await lock.end().catch(() => {});
    }
  })()
    .catch((error) => log(`stopped: ${(error as Error).message}`))
    .finally(() => {
      finished = true;
    });
  return {
    get finished() {
      return finished;
    },
    ended,
    async stop() {
      stopping = true;
      wakePause();
      await ended;
    },
  };
}

interface DriveOptions extends CutoverRunOptions {
  /** The runner's own control-plane connection (it holds the attempt's lock): map changes go through it. */
  control: pg.Client;
  /** Each step's duration in this attempt (ms), recorded with its last step for the bench's breakdown. */
  timings: Record<string, number>;
  pause(status: string): Promise<void>;
  stopping(): boolean;
}

/** Runs `fn`, adding its duration to `timings[name]`. */
async function timed<T>(timings: Record<string, number>, name: string, fn: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await fn();
  } finally {
    timings[name] = (timings[name] ?? 0) + Math.round((performance.now() - started) * 10) / 10;
  }
}

/**
 * How long the flip and the unfreeze after it take in this process, lately (ms): the flip is only
 * started with at least this much of the budget left, so the freeze ends within it. Seeded with a
 * fixed cost; each finished attempt adds its measure.
 */
const FLIP_RESERVE_SEED_MS = 40;
const recentFlipCosts: number[] = [];
function flipReserveMs(budgetMs: number): number {
  if (recentFlipCosts.length < 5) return FLIP_RESERVE_SEED_MS;
  const sorted = [...recentFlipCosts].sort((a, b) => a - b);
  // Capped: only done attempts add samples, so a reserve grown past the budget would abort every
  // attempt and never shrink again.
  return Math.min(sorted[Math.floor(sorted.length * 0.9)] ?? FLIP_RESERVE_SEED_MS, budgetMs / 4);
}
function recordFlipCost(ms: number): void {
  recentFlipCosts.push(ms);
  if (recentFlipCosts.length > 50) recentFlipCosts.shift();
}

/** Everything the steps need about the plan, loaded once per attempt. */
interface Context {
  row: CutoverRow;
  fences: PlanFences;
  schema: SourceSchema;
  /** Old owner O and new owner N. */
  from: FencedDatabase;
  to: FencedDatabase;
  /** The shard involved (to-shard: N; to-legacy: O) and its ordinal. */
  shard: FencedDatabase;
  shardOrdinal: number;
  /** The sharded tables' sequences (found before the freeze). */
  sequences: string[];
  /** What the pre-check's pass left each sequence at on the new owner, at least (never lowered). */
  sequencesOnNew: Map<string, bigint>;
  slotName: string;
  slotLsn: bigint;
  /** The origin on N that records how far the feeding stream applied O's WAL (found in the pre-check). */
  origin: string | null;
  /** When the map's freeze committed (epoch ms): the lock wait on O is bounded from here. */
  mapFrozenAt: number | null;
  /**
   * When this runner's flip committed, which unfroze the tenant on the map in the same statement
   * (null: not flipped by this runner — a restarted worker finishing an attempt unfreezes itself).
   */
  unfrozenAt: Date | null;
  /** N's fence as read during the drain (the version its one-route opening writes at). */
  newOwnerFence: FenceState | null;
}

async function loadContext(row: CutoverRow): Promise<Context> {
  // The runners' own pools: a freeze never queues behind CDC or parity for a connection.
  const fences = await loadPlanFences(row.planId, cutoverPool);
  const movement = await db().dataMovement.findUnique({
    where: { planId: row.planId },
    select: { slotName: true, slotLsn: true, status: true },
  });
  if (!movement) throw new Error("The plan's data movement no longer exists.");
  const byId = (id: string | null) =>
    id === null ? fences.legacy : fences.shards.find((s) => s.databaseId === id);
  const from = byId(row.fromDatabaseId);
  const to = byId(row.toDatabaseId);
  if (!from || !to) throw new Error("The cutover names a database that is no longer a shard of the plan.");
  const shard = row.direction === "to-shard" ? to : from;
  return {
    row,
    fences,
    schema: fences.schema,
    from,
    to,
    shard,
    shardOrdinal: fences.shards.indexOf(shard),
    sequences: [],
    sequencesOnNew: new Map(),
    slotName: movement.slotName,
    slotLsn: parseLsn(movement.slotLsn ?? "0/0"),
    origin: null,
    mapFrozenAt: null,
    unfrozenAt: null,
    newOwnerFence: null,
  };
}

/**
 * One routing-map change, with the attempt's status change when given, in one transaction: the
 * one-statement function when the process injected an audit drafter, else writeRoutingChange.
 * `statementTimeoutMs` (atomic path) bounds it on the server: past it nothing is written.
 */
async function changeMap(
  row: CutoverRow,
  options: DriveOptions,
  change: RouteChange,
  reason: string,
  attempt: {
    event?: CutoverEvent;
    note?: string;
    freezeStartedAt?: Date;
    freezeEndedAt?: Date;
    flip?: boolean;
    /** The tenant's route as the runner knows it to be (saves the read; wrong is safe: re-read). */
    known?: TenantRouteState;
  },
  statementTimeoutMs?: number,
  shards?: readonly string[],
): Promise<RoutingChangeRecord | null> {
  const request = {
    planId: row.planId,
    changes: [change],
    actor: { id: null, email: "system" },
    reason,
  };
  let to = row.status;
  if (attempt.event) {
    const next = nextCutoverStatus(row.status as never, attempt.event);
    if (!next.ok) throw new CutoverStateConflict(next.reason);
    to = next.to;
  }
  const step: CutoverStep | undefined = attempt.event
    ? {
        status: to,
        at: new Date().toISOString(),
        ...(attempt.note ? { note: attempt.note.slice(0, 500) } : {}),
      }
    : undefined;
  let record: RoutingChangeRecord | null;
  if (options.auditDraft) {
    const write: AttemptStatusWrite = {
      id: row.id,
      from: row.status,
      to,
      ...(step ? { step: step as unknown as Record<string, unknown> } : {}),
      freezeStartedAt: attempt.freezeStartedAt,
      freezeEndedAt: attempt.freezeEndedAt,
      flipVersion: attempt.flip,
    };
    try {
      record = await writeRoutingChangeAtomic(options.control, request, options.auditDraft, {
        attempt: write,
        statementTimeoutMs,
        ...(attempt.known && shards
          ? { known: { shards, routes: new Map([[row.tenantKey, attempt.known]]) } }
          : {}),
      });
    } catch (error) {
      if ((error as { code?: string }).code === ATTEMPT_CONFLICT_SQLSTATE) {
        throw new CutoverStateConflict(
          `Cutover ${row.id} is no longer ${row.status}: another worker changed it. This one stops.`,
        );
      }
      throw error;
    }
    if (record === null) {
      // Nothing to change on the map (a restarted worker repeating a step): the attempt still moves.
      if (attempt.event) {
        await advanceCutover(row, attempt.event, {
          freezeStartedAt: attempt.freezeStartedAt,
          freezeEndedAt: attempt.freezeEndedAt,
        });
      } else if (attempt.freezeEndedAt || attempt.freezeStartedAt) {
        await db().tenantCutover.update({
          where: { id: row.id },
          data: { freezeStartedAt: attempt.freezeStartedAt, freezeEndedAt: attempt.freezeEndedAt },
        });
      }
      return null;
    }
    if (step) {
      row.status = to;
      row.steps = [...row.steps, step];
    }
  } else {
    record = await db().$transaction(
      async (tx) => {
        const written = await writeRoutingChange(tx, request, options.audit);
        const data = {
          freezeStartedAt: attempt.freezeStartedAt,
          freezeEndedAt: attempt.freezeEndedAt,
          ...(attempt.flip ? { flipVersion: BigInt(written?.version ?? 0) } : {}),
        };
        if (attempt.event) await advanceCutover(row, attempt.event, data, { store: tx, note: attempt.note });
        else await tx.tenantCutover.update({ where: { id: row.id }, data });
        return written;
      },
      { timeout: 15_000, maxWait: 10_000 },
    );
  }
  if (attempt.flip) row.flipVersion = BigInt(record?.version ?? 0);
  if (attempt.freezeStartedAt) row.freezeStartedAt = attempt.freezeStartedAt;
  if (attempt.freezeEndedAt) row.freezeEndedAt = attempt.freezeEndedAt;
  return record;
}

async function driveCutover(cutoverId: string, options: DriveOptions): Promise<void> {
  const row = await readCutover(cutoverId);
  if (!row || !cutoverInFlight(row.status as never)) return;
  if (row.status === "requested") {
    await advanceCutover(row, "claimed", { worker: options.worker });
    options.log(`claimed: tenant ${row.tenantKey} ${row.direction}`);
    await runFresh(row, options);
    return;
  }
  // The worker that drove it died (its lock was free): the persisted status decides.
  const recovery = recoveryFor(row.status);
  options.log(`taking over at ${row.status}: ${recovery}`);
  await db().tenantCutover.update({ where: { id: row.id }, data: { worker: options.worker } });
  if (recovery === "finish") {
    const ctx = await loadContext(row);
    await finish(ctx, options, "a restarted worker finished it");
  } else if (recovery === "abort") {
    await abort(
      row,
      options,
      `The worker driving it stopped at ${row.status}; it was aborted, writes resumed on the old owner.`,
    );
  }
}

/** What is left of the freeze budget (ms), counted from when writes stopped (O's lock held). */
function remaining(row: CutoverRow): number {
  const start = row.freezeStartedAt?.getTime() ?? Date.now();
  return start + row.budgetMs - Date.now();
}

class Abort extends Error {}

/**
 * `work`'s outcome, or `late()`'s once `deadline` (epoch ms) passed first. The work is not
 * cancelled: its query ends whenever its server answers; what it does then is harmless (a sequence
 * is only ever raised, a read is dropped) and a failure then is not unhandled.
 */
async function byDeadline<T>(work: Promise<T>, deadline: number, late: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<T>((resolve, reject) => {
    timer = setTimeout(
      () => {
        try {
          resolve(late());
        } catch (error) {
          reject(error);
        }
      },
      Math.max(0, deadline - Date.now()),
    );
  });
  work.catch(() => {});
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function runFresh(row: CutoverRow, options: DriveOptions): Promise<void> {
  try {
    await options.pause("prechecking");
    const ctx = await loadContext(row);
    await timed(options.timings, "precheck", () => precheck(ctx, options));
    // From the map's freeze to the flip: nothing frozen while it waits for its turn.
    const release = options.freezeGate
      ? await timed(options.timings, "gate", () => (options.freezeGate as Gate).acquire())
      : () => {};
    try {
      await fence(ctx, options);
      await options.pause("fencing");
      await drainAndFlip(ctx, options);
    } finally {
      release();
    }
    await options.pause("flipped");
    await finish(ctx, options, null);
  } catch (error) {
    if (error instanceof CutoverStateConflict || options.stopping()) {
      options.log(
        `${(error as Error).name} at ${row.status}${options.stopping() ? " while stopping" : ""}: left for recovery`,
      );
      throw error;
    }
    // A step's transaction that failed left `row` ahead of the store: the store is the truth.
    const stored = await readCutover(row.id);
    if (stored)
      Object.assign(row, { ...stored, freezeStartedAt: stored.freezeStartedAt ?? row.freezeStartedAt });
    const message =
      error instanceof Abort ? error.message : `Failed at ${row.status}: ${(error as Error).message}`;
    if (row.status === "flipped") {
      // Past the commit point: only finishing is right; the next tick (here or elsewhere) retries.
      throw error;
    }
    try {
      await abort(row, options, message);
    } catch (failure) {
      // Left in flight: the next tick takes it over and aborts it again (recoveryFor).
      throw new Error(`abort after "${message}" failed: ${(failure as Error).message}`, { cause: failure });
    }
  }
}

async function precheck(ctx: Context, options: DriveOptions): Promise<void> {
  const { row } = ctx;
  const route = await db().tenantRoute.findUnique({
    where: { planId_tenantKey: { planId: row.planId, tenantKey: row.tenantKey } },
  });
  const owner = route?.ownerDatabaseId ?? null;
  if (owner !== row.fromDatabaseId) {
    throw new Abort(
      `Tenant ${row.tenantKey} is no longer on ${ctx.from.name} (the map changed since the request); request the cutover again.`,
    );
  }
  if (route?.frozen) {
    throw new Abort(
      `Tenant ${row.tenantKey} is frozen on the map by someone else; unfreeze it and try again.`,
    );
  }
  const map = await db().routingMap.findUnique({
    where: { planId: row.planId },
    select: { fenceInstalledAt: true },
  });
  const all = ctx.fences.all.map((d) => d.name).join(", ");
  if (!map?.fenceInstalledAt)
    await answered(
      ctx,
      installFencesOnce(ctx, options),
      PRECHECK_INSTALL_MS,
      `one of ${all}`,
      "installing the plan's fences",
    );
  // The reverse stream's slot must exist before the shard owns the tenant: every write there from
  // the flip on is in its WAL after the slot's consistent point, so reverse CDC carries it back.
  const slotInput = { planId: row.planId, shardOrdinal: ctx.shardOrdinal, schema: ctx.schema };
  const reverse =
    (await answered(
      ctx,
      findReverseSlot(ctx.shard.pool, slotInput),
      PRECHECK_ANSWER_MS,
      ctx.shard.name,
      "reading its reverse slot",
    )) ??
    (await answered(
      ctx,
      ensureReverseSlot(ctx.shard.pool, slotInput),
      PRECHECK_SLOT_CREATE_MS,
      ctx.shard.name,
      "creating its reverse slot",
    ));
  // Found now, not inside the freeze: the drain only polls it.
  ctx.origin =
    row.direction === "to-shard"
      ? applyOriginName(ctx.slotName, ctx.slotLsn, ctx.shardOrdinal)
      : reverseOriginName(reverse.slot, reverse.slotLsn);
  // The shard's reverse stream reads its slot before anything is frozen, in both directions: a
  // tenant's first cutover to a shard makes the slot, and the stream that the worker then starts
  // (a thread's start-up, a walsender's first decoding) ran inside that cutover's freeze — four of
  // the five slowest freezes of 500 cutovers (bench: 2,000+ ms pre-checks, 450–660 ms freezes).
  const [forwardLag, reverseLag] = await Promise.all([
    row.direction === "to-shard" ? recentLagMs(row.planId, feedingStream(row.direction).metric) : null,
    answered(
      ctx,
      reverseLagOnceStreaming(ctx.shard.pool, reverse.slot),
      REVERSE_STREAM_WAIT_MS + PRECHECK_ANSWER_MS,
      ctx.shard.name,
      "reading its reverse stream's lag",
    ),
  ]);
  const lag = row.direction === "to-shard" ? forwardLag : reverseLag;
  // Sequences found, and set a first time, before the freeze: inside it only one quick pass remains.
  ctx.sequences = await answered(
    ctx,
    shardedSequences(ctx.from.pool, ctx.schema.tables),
    PRECHECK_ANSWER_MS,
    ctx.from.name,
    "listing the sharded tables' sequences",
  );
  const lead = await answered(
    ctx,
    advanceSequences(ctx.from.pool, ctx.to.pool, ctx.sequences, SEQUENCE_LEAD),
    PRECHECK_ANSWER_MS,
    `${ctx.to.name} (or ${ctx.from.name}, whose values it reads)`,
    `setting ${ctx.to.name}'s sequences`,
  );
  ctx.sequencesOnNew = new Map(lead.map((b) => [b.sequence, b.newOwner]));
  // Back to legacy: a reverse slot made again (ensureReverseSlot does so silently) streams only
  // what commits after its consistent point; when legacy's origin of the earlier slot stops below
  // it, the shard's writes in between never reached legacy, and this drain (on the new origin)
  // could not show it (break-pass3.test.ts).
  const gap =
    row.direction === "to-legacy"
      ? reverseSlotGap(
          await answered(
            ctx,
            legacyReverseOrigins(ctx.to.pool, reverse.slot),
            PRECHECK_ANSWER_MS,
            ctx.to.name,
            "reading its replication origins",
          ),
          reverse.slotLsn,
          ctx.shard.name,
        )
      : null;
  const blocker =
    (gap ? `${gap} Nothing was frozen.` : null) ??
    lagBlocker(row.direction, lag, row.budgetMs) ??
    (reverseLag === null
      ? `Reverse replication (${ctx.shard.name} → legacy) is not reading its slot ${reverse.slot} after ${REVERSE_STREAM_WAIT_MS / 1000} s: the tenant could not go back to legacy after the flip, so nothing was frozen. Check that the data movement runs and the worker's log, then try again.`
      : null);
  if (blocker) {
    await advanceCutover(row, "precheck-failed", { error: blocker, endedAt: new Date() }, { note: blocker });
    options.log(`pre-check failed: ${blocker}`);
    throw new PrecheckFailed(blocker);
  }
}

class PrecheckFailed extends Error {}

/**
 * How long one call of the pre-check to a plan database may go unanswered (ms). Nothing is frozen
 * yet, so there is no budget to keep, but an attempt waiting on a database that does not answer (a
 * hung or partitioned server, whose socket says nothing for as long as TCP keeps it; a session
 * holding a lock the call needs) holds one of the worker's scheduler slots and a promotion waiting
 * for its end, for as long as that lasts. Each call is a catalog read or a setval that a healthy
 * server answers in milliseconds; 10 s covers a loaded one and the wait for one of the cutover
 * pool's connections when many attempts run at once, and still ends a hung one soon.
 */
export const PRECHECK_ANSWER_MS = 10_000;
/**
 * A reverse slot's creation (a tenant's first cutover to the shard) and the fences' install wait for
 * the transactions running there (the slot's consistent point, the triggers' table locks): longer.
 */
const PRECHECK_SLOT_CREATE_MS = 60_000;
const PRECHECK_INSTALL_MS = 60_000;

/**
 * `work`, or an abort that names who did not answer once `ms` passed first. The late call is not
 * cancelled (a hung server answers no cancel either): a read is dropped, a slot or a fence made late
 * is what the next attempt would make, a sequence is only ever raised.
 */
function answered<T>(ctx: Context, work: Promise<T>, ms: number, who: string, what: string): Promise<T> {
  return byDeadline(work, Date.now() + ms, () => {
    throw new Abort(
      `The pre-check got no answer from ${who} within ${ms / 1000} s (${what}); nothing was frozen and tenant ${ctx.row.tenantKey} stays on ${ctx.from.name}. Check that ${who} answers (up, reachable, no session there holding a lock the cutover needs: pg_locks), then request the cutover again.`,
    );
  });
}

const FENCE_INSTALL_LOCK = 7_363_801;

/**
 * Installs the plan's fences unless another cutover did meanwhile: one at a time per plan (two
 * installs at once fail each other: "tuple concurrently updated" on the trigger function).
 */
async function installFencesOnce(ctx: Context, options: DriveOptions): Promise<void> {
  const lock = new pg.Client({
    connectionString: options.controlPlaneUrl,
    application_name: "shardshift-fence-install",
  });
  lock.on("error", () => {});
  await lock.connect();
  try {
    await lock.query("select pg_advisory_lock($1, hashtext($2))", [FENCE_INSTALL_LOCK, ctx.row.planId]);
    const map = await db().routingMap.findUnique({
      where: { planId: ctx.row.planId },
      select: { fenceInstalledAt: true },
    });
    if (map?.fenceInstalledAt) return;
    options.log("installing the plan's fences");
    await installPlanFences(ctx.fences);
  } finally {
    await lock.end().catch(() => {});
  }
}

/**
 * The map freezes the tenant (routers hold its writes), then O's fence: once O's transaction holds
 * the tenant's lock exclusively, every writer of it there has ended and none can start — the freeze
 * clock starts there (freeze_started_at). The wait for that lock is bounded by the budget too.
 */
async function fence(ctx: Context, options: DriveOptions): Promise<void> {
  const { row } = ctx;
  // The pre-check read it so: owned by O, not frozen. Only that route is frozen for this attempt:
  // one changed since (an operator's freeze or move) is not this attempt's, and it aborts.
  const before: TenantRouteState = { ownerId: row.fromDatabaseId, frozen: false };
  const record = await timed(options.timings, "mapFreeze", () =>
    routeChangedAborts("freeze", () =>
      changeMap(
        row,
        options,
        { tenantKey: row.tenantKey, frozen: true, onlyFrom: before },
        `cutover ${row.direction} of tenant ${row.tenantKey}: freeze (${row.reason})`,
        { event: "fenced", known: before },
        undefined,
        shardIdsOf(ctx),
      ),
    ),
  );
  const version = record?.version ?? 0;
  ctx.mapFrozenAt = Date.now();
  let lockedAt: number | null = null;
  const started = performance.now();
  let lockedPerf = 0;
  const onLocked = async () => {
    lockedAt ??= Date.now();
    lockedPerf ||= performance.now();
    // Test hook: O's fence transaction holds the tenant's lock, its change not yet sent.
    await options.pause("fence-locked");
  };
  // O's fence: frozen. Returns once every transaction that wrote the tenant there has ended.
  const lsn = await freezeOn(ctx, version, row.budgetMs, onLocked);
  const ended = performance.now();
  options.timings.lockWait = Math.round(((lockedPerf || ended) - started) * 10) / 10;
  options.timings.fenceCommit = Math.round((ended - (lockedPerf || ended)) * 10) / 10;
  row.freezeStartedAt = new Date(lockedAt ?? Date.now());
  row.freezeLsn = formatLsn(lsn);
  // The other databases learn of the freeze too (refusing nothing new: they did not own it).
  void syncPlanFences(ctx.fences, {
    only: ctx.fences.all.filter((d) => d !== ctx.from),
    lockTimeoutMs: 2_000,
  }).catch(() => {});
  options.log(`fenced on ${ctx.from.name} at ${row.freezeLsn} (map version ${version})`);
}

/**
 * Brings O's fence to at least `version` (the freeze) within the budget and returns the freeze
 * position P. When the fence watch got there first, the change is already in force: a second
 * fence transaction for the tenant (same route, the version O already holds) takes the tenant's
 * lock again and writes the position message, which is all the drain needs.
 */
async function freezeOn(
  ctx: Context,
  version: number,
  lockTimeoutMs: number,
  onLocked: () => void | Promise<void>,
): Promise<bigint> {
  const [outcome] = await syncPlanFences(ctx.fences, {
    only: [ctx.from],
    lockTimeoutMs,
    onLocked,
    lockOnly: [ctx.row.tenantKey],
  });
  if (outcome?.error)
    throw new Abort(`Could not freeze tenant ${ctx.row.tenantKey} on ${ctx.from.name}: ${outcome.error}`);
  if (outcome?.lsn !== undefined && outcome.to >= version) return outcome.lsn;
  const state = await readFenceState(ctx.from.pool);
  if (!state || state.mapVersion < version) {
    throw new Abort(`The fence on ${ctx.from.name} did not reach map version ${version}.`);
  }
  const result = await syncFence(ctx.from.pool, {
    planId: ctx.row.planId,
    databaseName: ctx.from.name,
    routes: [
      {
        tenantKey: ctx.row.tenantKey,
        ownerKey: ctx.from.key,
        ownerName: ctx.from.name,
        frozen: true,
        version,
      },
    ],
    version: state.mapVersion,
    lockTimeoutMs,
    onLocked,
  });
  return result.lsn;
}

/** The 'draining' status with the freeze's start and position, on the runner's own connection. */
async function markQuiesced(ctx: Context, options: DriveOptions): Promise<void> {
  const { row } = ctx;
  const next = nextCutoverStatus(row.status as never, "quiesced");
  if (!next.ok) throw new CutoverStateConflict(next.reason);
  const step: CutoverStep = {
    status: next.to,
    at: new Date().toISOString(),
    note: `freeze position ${row.freezeLsn}`,
  };
  const { rowCount } = await options.control.query(
    `update tenant_cutover set status = $3, steps = steps || $4::jsonb, freeze_lsn = $5,
       freeze_started_at = $6::timestamptz, updated_at = now()
     where id = $1::uuid and status = $2`,
    [row.id, row.status, next.to, JSON.stringify([step]), row.freezeLsn, row.freezeStartedAt?.toISOString()],
  );
  if (rowCount !== 1) {
    throw new CutoverStateConflict(
      `Cutover ${row.id} is no longer ${row.status}: another worker changed it. This one stops.`,
    );
  }
  row.status = next.to;
  row.steps = [...row.steps, step];
}

async function drainAndFlip(ctx: Context, options: DriveOptions): Promise<void> {
  const { row } = ctx;
  const freezeLsn = parseLsn(row.freezeLsn ?? "0/0");
  const origin = ctx.origin;
  if (!origin) throw new Error("the feeding stream's origin was not found in the pre-check");
  const deadline = (row.freezeStartedAt?.getTime() ?? Date.now()) + row.budgetMs;
  // The status write, the drain's wait and the sequences run together: none needs the others.
  // The sequences only need the freeze: every row the tenant has on O was inserted before O's
  // fence took its lock, so O's values read from now on are past all of them (never lowered on N,
  // so setting them even for a drain that then misses the budget changes nothing).
  // N's fence version is read here too, so opening N after the flip is one round trip.
  // Each of them ends at the deadline, answered or not: a database that stops answering (a hung or
  // partitioned server: its socket says nothing for as long as TCP keeps it) must not hold the
  // tenant frozen past its budget, nor this worker's freeze gate while it lasts.
  const [, drained, bumps, newOwnerFence] = await Promise.all([
    timed(options.timings, "markDraining", () => markQuiesced(ctx, options)),
    timed(options.timings, "drain", () =>
      byDeadline(waitForOriginProgress(ctx.to.pool, origin, freezeLsn, deadline), deadline, () => ({
        reached: false,
        progress: null,
        marked: null,
      })),
    ),
    timed(options.timings, "sequences", () =>
      byDeadline(
        advanceSequences(ctx.from.pool, ctx.to.pool, ctx.sequences, 0n, ctx.sequencesOnNew),
        deadline,
        () => {
          throw new Abort(
            `The sequences of ${ctx.to.name} were not set when the ${row.budgetMs} ms freeze budget ran out (a database did not answer); the cutover was aborted and writes resumed on ${ctx.from.name}.`,
          );
        },
      ),
    ),
    byDeadline(
      readFenceState(ctx.to.pool).catch(() => null),
      deadline,
      () => null,
    ),
  ]);
  ctx.newOwnerFence = newOwnerFence;
  if (!drained.reached) {
    throw new Abort(
      `The ${feedingStream(row.direction).name} had applied ${ctx.to.name} only up to ${formatLsn(drained.progress ?? 0n)} of ${row.freezeLsn}${drainShortfallNote(drained, freezeLsn)} when the ${row.budgetMs} ms freeze budget ran out; the cutover was aborted and writes resumed on ${ctx.from.name}. Try again when replication lag is lower, or with a larger budget.`,
    );
  }
  options.log(
    `drained ${ctx.to.name} to ${formatLsn(drained.progress ?? 0n)} and sequences set ${Date.now() - (row.freezeStartedAt?.getTime() ?? 0)} ms into the freeze`,
  );
  await options.pause("draining");
  // The flip and the unfreeze after it must end inside the budget too: start the flip only with
  // what they usually take still left, and give the flip's statement no more than what is left.
  const left = remaining(row);
  const reserve = flipReserveMs(row.budgetMs);
  if (left < reserve) {
    throw new Abort(
      `The ${row.budgetMs} ms freeze budget ran out before the flip (drained and sequences set, ${Math.max(0, Math.round(left))} ms left; the flip and unfreeze take about ${Math.round(reserve)} ms); aborted, writes resumed on ${ctx.from.name}.`,
    );
  }
  // The commit point: the map names N, and no longer holds the tenant's writes, in the same
  // statement as 'flipped'. One map change, not a flip then an unfreeze: every map change of the
  // plan holds the map's row lock until its commit is flushed, so with eight cutovers at once each
  // waits for the others' flushes; the separate unfreeze was a third of those waits, and the
  // tenant's writes stayed held through it. Unfreezing here opens nothing sooner: routers still
  // find N's fence closed until finish() brings it up (the SDK retries, as it did after the
  // separate unfreeze), and until this commits the tenant is frozen with O its owner.
  // The freeze above wrote it so, and this runner holds the attempt. Only that route is flipped: if
  // someone else changed it meanwhile (an operator unfroze the tenant, so its writes may have
  // resumed on O past the freeze position the drain covered; or moved it), the drain proves
  // nothing about the route now, and the attempt aborts.
  const frozenOnOld: TenantRouteState = { ownerId: row.fromDatabaseId, frozen: true };
  try {
    await timed(options.timings, "flip", () =>
      routeChangedAborts("flip", () =>
        changeMap(
          row,
          options,
          { tenantKey: row.tenantKey, ownerId: row.toDatabaseId, frozen: false, onlyFrom: frozenOnOld },
          `cutover ${row.direction} of tenant ${row.tenantKey}: flip to ${ctx.to.name} (${row.reason})`,
          {
            event: "flipped",
            flip: true,
            note: `drained to ${formatLsn(drained.progress ?? 0n)}; sequences ${bumps.length ? bumps.map((b) => `${b.sequence}≥${b.newOwner}`).join(", ") : "none"}`,
            known: frozenOnOld,
          },
          options.auditDraft ? Math.max(1, left - reserve / 2) : undefined,
          shardIdsOf(ctx),
        ),
      ),
    );
  } catch (error) {
    // Cancelled by its statement timeout: nothing was written, the old owner is still the owner.
    if ((error as { code?: string }).code === "57014") {
      throw new Abort(
        `The ${row.budgetMs} ms freeze budget ran out while the flip was being written (nothing was written); aborted, writes resumed on ${ctx.from.name}.`,
      );
    }
    throw error;
  }
  ctx.unfrozenAt = new Date();
  options.log(`flipped to ${ctx.to.name} (map version ${row.flipVersion})`);
}

/**
 * From the commit point on (idempotent, so a restarted worker runs it again): the map unfreezes
 * the tenant on N (this runner's flip already did), N's fence follows at once (writes resume
 * there), then every fence.
 */
async function finish(ctx: Context, options: DriveOptions, note: string | null): Promise<void> {
  const { row } = ctx;
  const freezeEndedAt = row.freezeEndedAt ?? ctx.unfrozenAt ?? new Date();
  const flipStarted = performance.now() - (options.timings.flip ?? 0);
  if (ctx.unfrozenAt === null) {
    // A restarted worker: the flip it finds may be one that left the tenant frozen (an attempt
    // flipped before flips unfroze). No remote work inside the control-plane transaction: it
    // would hold a transaction id (and the map's row lock) while a shard answers, and a reverse
    // slot's creation waits for every running transaction on the server.
    // Only a route the flip left (owned by N, frozen) is unfrozen here: already unfrozen (the flip
    // did it) or changed by someone else since, it is left as it is.
    await timed(options.timings, "unfreeze", async () => {
      try {
        await changeMap(
          row,
          options,
          {
            tenantKey: row.tenantKey,
            ownerId: row.toDatabaseId,
            frozen: false,
            onlyFrom: { ownerId: row.toDatabaseId, frozen: true },
          },
          `cutover ${row.direction} of tenant ${row.tenantKey}: unfreeze on ${ctx.to.name} (${row.reason})`,
          { freezeEndedAt },
        );
      } catch (error) {
        if (!(error instanceof RoutingChangeRefused && error.kind === "conflict")) throw error;
        if (!row.freezeEndedAt) {
          await db().tenantCutover.update({ where: { id: row.id }, data: { freezeEndedAt } });
          row.freezeEndedAt = freezeEndedAt;
        }
      }
    });
  }
  // What the flip reserve covers: the flip (which ends the freeze), not fence syncs.
  if (options.timings.flip !== undefined) recordFlipCost(performance.now() - flipStarted);
  // N first: routers that read the unfrozen map find N's fence open, at worst after one retry.
  await timed(options.timings, "fenceNew", () => openNewOwner(ctx));
  if (row.freezeStartedAt) options.timings.writesResume = Date.now() - row.freezeStartedAt.getTime();
  if (ctx.mapFrozenAt !== null) options.timings.mapFrozen = Date.now() - ctx.mapFrozenAt;
  // 'done' means every fence enforces the new owner, O's first of all (a write that bypasses the
  // router is refused there as not the owner from now on).
  await timed(options.timings, "fenceAll", () => syncEveryFence(ctx.fences, options));
  if (row.freezeStartedAt) options.timings.freeze = freezeEndedAt.getTime() - row.freezeStartedAt.getTime();
  await advanceCutover(
    row,
    "finished",
    // The freeze's end, when this runner's flip ended it: written with 'done' (a restarted worker
    // that finds it missing stamps its own time, a longer freeze than the real one, never shorter).
    { endedAt: new Date(), error: null, ...(row.freezeEndedAt ? {} : { freezeEndedAt }) },
    { note: note ?? undefined, timings: options.timings },
  );
  const freezeMs = row.freezeStartedAt ? freezeEndedAt.getTime() - row.freezeStartedAt.getTime() : null;
  options.log(
    `done: tenant ${row.tenantKey} on ${ctx.to.name}${freezeMs === null ? "" : `, frozen ${freezeMs} ms`}`,
  );
}

/**
 * N's fence row for the tenant, as the flip wrote it: owned by N, not frozen, at the flip's map
 * version — written alone, with N's fence version left where it is (the same one-route change the
 * freeze makes when the watch got there first), so it needs neither the control plane's routes
 * since N's version nor the lock of N's one fence_state row. syncEveryFence brings N's version up
 * next. A restarted worker, which does not know the flip's version here, syncs N as a whole.
 */
async function openNewOwner(ctx: Context): Promise<void> {
  const { row, to } = ctx;
  const flipped = ctx.unfrozenAt !== null && row.flipVersion ? row.flipVersion : null;
  // Read before the flip: only the version the change leaves N's fence at (never above what it held).
  const state = flipped ? ctx.newOwnerFence : null;
  if (!state || state.planId !== row.planId || !flipped) {
    await syncPlanFences(ctx.fences, { only: [to], lockTimeoutMs: 5_000 });
    return;
  }
  // A failure here is not the attempt's: syncEveryFence, next, brings N up to the map anyway.
  await syncFence(to.pool, {
    planId: row.planId,
    databaseName: to.name,
    routes: [
      {
        tenantKey: row.tenantKey,
        ownerKey: to.key,
        ownerName: to.name,
        frozen: false,
        version: Number(flipped),
      },
    ],
    version: state.mapVersion,
    lockTimeoutMs: 5_000,
  }).catch(() => {});
}

/**
 * Runs a map change of this attempt that names the route it is for (onlyFrom): a route someone
 * else changed meanwhile aborts the attempt, nothing written.
 */
async function routeChangedAborts<T>(step: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof RoutingChangeRefused && error.kind === "conflict") {
      throw new Abort(
        `${error.message} Someone else changed the map during the cutover, so its ${step} was not written; the cutover was aborted, the tenant's route left as they wrote it.`,
      );
    }
    throw error;
  }
}

/** The plan's shard ids, as the map change's decision needs them. */
function shardIdsOf(ctx: Context): string[] {
  return ctx.fences.shards.map((s) => s.databaseId);
}

/**
 * Brings every fence up to the map, a few tries each; one left behind is the fence watch's to finish.
 * With `answerWithinMs`, a database that does not answer within it is left to the watch at once (no
 * retry: it would only wait again).
 */
async function syncEveryFence(
  fences: PlanFences,
  options: DriveOptions,
  answerWithinMs?: number,
): Promise<void> {
  let targets = fences.all;
  for (let attempt = 1; attempt <= 3 && targets.length > 0; attempt++) {
    const outcomes = await syncPlanFences(fences, { only: targets, answerWithinMs });
    const failed = new Set(outcomes.filter((o) => o.error && !o.unanswered).map((o) => o.database));
    for (const outcome of outcomes) {
      if (outcome.error) options.log(`fence on ${outcome.database}: ${outcome.error}`);
    }
    targets = targets.filter((t) => failed.has(t.name));
  }
}

/**
 * How long the abort waits for each database's fence sync (ms). A healthy fence sync of an abort is
 * one small transaction (tens of ms; the old owner's waits for the tenant's writers, which the
 * freeze already ended); 5 s is well past that and still a prompt end.
 */
const ABORT_FENCE_ANSWER_MS = 5_000;

/** Before the commit point: the old owner stays the owner, the freeze lifts. */
async function abort(row: CutoverRow, options: DriveOptions, message: string): Promise<void> {
  if (row.status === "aborted" || row.status === "done") return;
  if (row.status === "prechecking" || row.status === "requested") {
    await advanceCutover(
      row,
      "abort",
      { error: message, endedAt: new Date() },
      { note: message, timings: options.timings },
    );
    options.log(`aborted: ${message}`);
    return;
  }
  if (row.status !== "aborting") {
    await advanceCutover(
      row,
      "abort",
      { error: message, freezeStartedAt: row.freezeStartedAt ?? undefined, freezeLsn: row.freezeLsn },
      { note: message },
    );
  }
  const freezeEndedAt = row.freezeEndedAt ?? (row.freezeStartedAt ? new Date() : null);
  const fences = await loadPlanFences(row.planId, cutoverPool);
  // Only the route this attempt froze (owned by O, frozen) is unfrozen: one someone else changed
  // since is theirs (an operator's unfreeze or move), and is left as it is.
  await timed(options.timings, "unfreeze", async () => {
    try {
      await changeMap(
        row,
        options,
        {
          tenantKey: row.tenantKey,
          ownerId: row.fromDatabaseId,
          frozen: false,
          onlyFrom: { ownerId: row.fromDatabaseId, frozen: true },
        },
        `cutover ${row.direction} of tenant ${row.tenantKey} aborted: unfreeze on the old owner`,
        { freezeEndedAt: freezeEndedAt ?? undefined },
      );
    } catch (error) {
      if (!(error instanceof RoutingChangeRefused && error.kind === "conflict")) throw error;
      options.log(`abort leaves the map as it is: ${error.message}`);
      if (freezeEndedAt) {
        await db().tenantCutover.update({ where: { id: row.id }, data: { freezeEndedAt } });
        row.freezeEndedAt = freezeEndedAt;
      }
    }
  });
  // Bounded: the map already unfroze the tenant, and a database that does not answer (hung,
  // partitioned, or a lock on its fence_state held) must not keep the attempt "aborting" for as long
  // as that lasts — with its scheduler slot, and a promotion waiting for its end. Its fence stays
  // behind the map (a stale fence refuses more, never less) and the fence watch brings it in line on
  // its first round once it answers (this run's session, which holds the plan's fence-sync lock
  // shared, has ended by then).
  await timed(options.timings, "fenceAll", () => syncEveryFence(fences, options, ABORT_FENCE_ANSWER_MS));
  if (row.freezeStartedAt && freezeEndedAt)
    options.timings.freeze = freezeEndedAt.getTime() - row.freezeStartedAt.getTime();
  await advanceCutover(row, "aborted", { endedAt: new Date() }, { timings: options.timings });
  await recordEngineEvent(
    row.planId,
    "warn",
    "cutover",
    `Cutover of tenant ${row.tenantKey}: ${message}`,
  ).catch(() => {});
  options.log(`aborted: ${message}`);
}
