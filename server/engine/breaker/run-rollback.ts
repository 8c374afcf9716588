// One trip's rollback, driven to its end by the worker that holds its lock (docs/breaker.md): every
// tenant of the scope back to legacy AT ONCE — fence the set on their shards (one fence transaction
// per shard), drain reverse replication of every affected shard to its fence position (shards in
// parallel), flip every owner to legacy in ONE routing-map version, then unfreeze.
//
// Design:
// - The same primitives as a tenant's cutover (run-cutover.ts is not touched): writeRoutingChange
//   for the map, syncPlanFences/syncFence for the fences, waitForOriginProgress for the drain,
//   advanceSequencesFromAll, ensureReverseSlot/reverseLagMs. A set is one map change with many routes.
// - Exclusivity: a session advisory lock per trip (BREAKER_LOCK_CLASS) on the runner's own
//   connection; a killed worker's lock dies with it and the next tick anywhere takes the trip over.
// - Cutovers of the same tenants: a `requested` one is aborted (nothing of it ran); one a worker
//   already drives is WAITED for, before the freeze (it ends within its own freeze budget, and from
//   outside it cannot be stopped safely: its runner holds the fence lock, and after its flip it can
//   only finish). The freeze itself is written under the plan's row lock, the lock requestCutover
//   takes, after checking none is in flight: a cutover requested later finds its tenant frozen (its
//   pre-check aborts) or the trip in flight (the request is refused).
// - Nothing half done: before the flip's commit any failure or missed budget lifts every fence of
//   the set (the shards keep their tenants); the flip is one transaction for the whole set.
// - A shard that is DOWN (it does not answer when the trip is prepared) cannot be fenced or drained:
//   its tenants cannot be written anyway (their owner is down), so they are frozen on the map with
//   the rest, and flip with the rest only if legacy's durable reverse progress (or the slot's
//   confirmed position at the shard's last probe) covers the shard's last known flushed position,
//   recorded by the shard watch while it answered (gates/shard-probe.ts). Otherwise they are HELD:
//   frozen, still the shard's, named on the trip with the position legacy is known to hold, and the
//   trip ends `failed` for a human; the other shards' tenants flip. The fence watch fences the shard
//   again from the map as soon as it answers.
// - Test hook: SHARDSHIFT_BREAKER_PAUSE_AT=<step> (settling, fenced, drained, flipped) holds the
//   runner there, so a crash test can SIGKILL the worker at that step.
import pg from "pg";
import type { Prisma } from "../../generated/prisma/client";
import { type ReverseSlot, reverseSlotName } from "../cdc/reverse-slot";
import { formatLsn } from "../cdc/slot";
import {
  drainShortfallNote,
  ensureReverseSlot,
  legacyReverseOrigins,
  reverseLagOnceStreaming,
  reverseOriginName,
  reverseSlotGap,
  waitForOriginProgress,
} from "../cutover/cdc-links";
import { lagBlocker } from "../cutover/precheck";
import {
  advanceSequencesFromAll,
  advanceSequencesPastRows,
  SEQUENCE_LEAD,
  shardedSequences,
} from "../cutover/sequences";
import { lastKnownPosition, SHARD_PROBE_TIMEOUT_MS } from "../gates/shard-probe";
import { type RoutingAuditDraft, VERSION_TOKEN } from "../routing/atomic-change";
import { fenceRouteOf, readFenceState, syncFence } from "../routing/fence";
import { FENCE_SYNC_WAIT_MS, holdFenceSync, releaseFenceSync } from "../routing/fence-watch";
import { type FencedDatabase, loadPlanFences, type PlanFences, syncPlanFences } from "../routing/plan-fences";
import { type RoutingAuditWriter, type TenantRouteState, writeRoutingChange } from "../routing/routing-map";
import { withClient } from "../sql/connect";
import { breakerRecoveryFor, MAX_BREAKER_ATTEMPTS } from "../state/breaker";
import { db } from "../store/db";
import { databaseUrl, recordEngineEvent } from "../store/movement-context";
import { RollbackSpans } from "./rollback-spans";
import { CUTOVER_IN_FLIGHT, cutoversOfScope, tenantsInScope } from "./scope";
import {
  type Expected,
  ROUTE_MOVED_SQLSTATE,
  RouteNotAsExpected,
  routesNotAsExpected,
  TRIP_MOVED_SQLSTATE,
  writeTripMapChange,
} from "./trip-map-change";
import {
  advanceTrip,
  BREAKER_LOCK_CLASS,
  driveTripAs,
  noteTripStep,
  readTrip,
  stepOf,
  type TenantOutcome,
  type TripRow,
  TripStateConflict,
} from "./trip-store";

/** Advisory lock class (two-int form) of a trip: held by the session of the worker driving it. */
export { BREAKER_LOCK_CLASS };

/** The engine's breaker events in the audit log (the process injects a system actor's writer). */
export type BreakerAuditWriter = (
  tx: Prisma.TransactionClient,
  event: { action: string; planId: string; tripId: string; after: unknown; reason: string | null },
) => Promise<void>;

export interface RollbackRunOptions {
  worker: string;
  controlPlaneUrl: string;
  audit: RoutingAuditWriter;
  breakerAudit: BreakerAuditWriter;
  log: (message: string) => void;
  /**
   * Drafts the audit event of a map change for the one-statement freeze and flip
   * (trip-map-change.ts); without it they run as interactive transactions (writeRoutingChange).
   */
  auditDraft?: RoutingAuditDraft;
  /** Test hook (SHARDSHIFT_BREAKER_PAUSE_AT): wait once this step is reached. */
  pauseAt?: string | null;
  /** An open control-plane connection the run takes over (and ends); without it, it opens one. */
  connection?: pg.Client;
}

export interface RollbackRun {
  readonly finished: boolean;
  readonly ended: Promise<void>;
  stop(): Promise<void>;
}

/** How long the trip waits, before freezing anything, for cutovers of its tenants to end. */
export function settleWindowMs(budgetMs: number): number {
  return Math.max(10_000, budgetMs * 5);
}

export function startRollbackRun(tripId: string, options: RollbackRunOptions): RollbackRun {
  let finished = false;
  let stopping = false;
  let wakePause: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    wakePause = resolve;
  });
  const log = (m: string) => options.log(`[breaker ${tripId.slice(0, 8)}] ${m}`);
  const ended = (async () => {
    const given = options.connection;
    const lock =
      given ??
      new pg.Client({
        connectionString: options.controlPlaneUrl,
        application_name: "shardshift-breaker-lock",
      });
    // The trip's lock lives as long as this session: once it is gone (the server ended it, the
    // network dropped it), another worker may take the trip over, so this run must not take one
    // more step — above all not undo or give up what the other is driving. It stops, and the
    // trip is left for recovery.
    let lost: string | null = null;
    lock.on("error", (error) => {
      lost ??= error.message;
    });
    lock.on("end", () => {
      lost ??= "the connection ended";
    });
    if (!given) await lock.connect();
    try {
      const { rows } = await lock.query<{ ok: boolean }>(
        "select pg_try_advisory_lock($1, hashtext($2)) as ok",
        [BREAKER_LOCK_CLASS, tripId],
      );
      if (!rows[0]?.ok) return; // a live worker drives it
      await driveTrip(tripId, {
        ...options,
        control: lock,
        log,
        pause: async (step, recorded) => {
          if (lost !== null) throw new TripStateConflict(`the trip's lock was lost (${lost}) before ${step}`);
          if (options.pauseAt !== step) return;
          await recorded;
          log(`paused at ${step} (SHARDSHIFT_BREAKER_PAUSE_AT)`);
          await stopped;
          throw new Error("stopped while paused (test hook)");
        },
        stopping: () => stopping,
        lockLost: () => lost,
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

interface DriveOptions extends RollbackRunOptions {
  /** The runner's own control-plane connection (it holds the trip's lock): the flip's statement runs there. */
  control: pg.Client;
  /** A test hook: holds the run at `step` (SHARDSHIFT_BREAKER_PAUSE_AT), once `recorded` (the step's own write) has settled. */
  pause(step: string, recorded?: Promise<unknown>): Promise<void>;
  stopping(): boolean;
  /** Why the session holding the trip's lock is gone, or null while it holds it. */
  lockLost(): string | null;
}

/**
 * The SQLSTATE of a failed statement, through pg's error or Prisma's wrapping of it (a raw query in
 * an interactive transaction reports the database's code in `meta` or its cause).
 */
function sqlStateOf(error: unknown): string | undefined {
  const e = error as {
    code?: unknown;
    meta?: { code?: unknown };
    cause?: { code?: unknown; originalCode?: unknown };
  };
  for (const code of [e.meta?.code, e.cause?.originalCode, e.cause?.code, e.code])
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
  const match = /\b(SS10[13])\b/.exec(String((error as Error)?.message ?? ""));
  return match?.[1];
}

/** Gives up before the flip: the message says what was left and why. */
class GiveUp extends Error {}

const SYSTEM = { id: null, email: "system" };
const TX = { timeout: 30_000, maxWait: 10_000 };
/** How long a statement on the lock's session may take to answer before the run stops waiting for it. */
const HOLD_ANSWER_MS = 2_000;

/** `work`'s value, or `otherwise` once `ms` passed without it (a session cut off never answers). */
async function answeredWithin<T>(work: Promise<T>, ms: number, otherwise: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((resolve) => {
    timer = setTimeout(resolve, ms, otherwise);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The routes of `tenants` with the map row locked (the lock writeRoutingChange takes next, in the
 * same transaction: nothing moves them between this read and its write).
 */
async function lockedRoutes(
  tx: Prisma.TransactionClient,
  planId: string,
  tenants: readonly string[],
): Promise<Map<string, TenantRouteState>> {
  await tx.$queryRaw`select version from routing_map where plan_id = ${planId}::uuid for no key update`;
  const rows = await tx.$queryRaw<{ tenant_key: string; owner: string | null; frozen: boolean }[]>`
    select tenant_key, owner_database_id::text as owner, frozen from tenant_route
    where plan_id = ${planId}::uuid and tenant_key in (select jsonb_array_elements_text(${JSON.stringify(tenants)}::jsonb))`;
  return new Map(rows.map((r) => [r.tenant_key, { ownerId: r.owner, frozen: r.frozen }]));
}

async function driveTrip(tripId: string, options: DriveOptions): Promise<void> {
  const row = await readTrip(tripId);
  if (!row) return;
  // Every step this run records is written only while its session still holds the trip's lock
  // (trip-store.ts): a run cut off from it without hearing it changes nothing and stops.
  const lockPid = (options.control as unknown as { processID: number | null }).processID;
  if (lockPid) driveTripAs(row, lockPid);
  if (row.status === "tripped") {
    // How long the trip waited for a worker (its row's creation → read here): on the click→flip path.
    options.log(`picked up ${Date.now() - row.createdAt.getTime()} ms after the trip`);
    if (row.attempts >= MAX_BREAKER_ATTEMPTS) {
      // Through undo: tenants an earlier trip held that this one was to finish are released there.
      await undo(
        row,
        options,
        "gave-up",
        `${row.attempts} attempts did not finish the rollback (last: ${row.error ?? "unknown"}); the tenants stay on their shards. Trip again once the cause is fixed.`,
      );
      return;
    }
    await advanceTrip(row, "claimed", { attempts: row.attempts + 1, worker: options.worker });
    options.log(`claimed (attempt ${row.attempts + 1}): ${row.trigger} trip, scope ${row.scope.kind}`);
    await runFresh(row, options);
    return;
  }
  if (row.status !== "rolling_back") return;
  // The worker that drove it died (its lock was free): the flip's commit decides.
  const recovery = breakerRecoveryFor(row.flipVersion);
  options.log(`taking over a rollback left at ${row.steps.at(-1)?.status ?? row.status}: ${recovery}`);
  await db().breakerTrip.update({ where: { id: row.id }, data: { worker: options.worker } });
  if (recovery === "finish") {
    await finish(row, await loadPlanFences(row.planId), options, "a restarted worker finished it");
  } else {
    await undo(
      row,
      options,
      "interrupted",
      `The worker driving the rollback stopped at ${row.steps.at(-1)?.status ?? "rolling_back"}, before the flip; the fences were lifted and the tenants stay on their shards until the trip is driven again.`,
    );
  }
}

function remaining(row: TripRow): number {
  return (row.freezeStartedAt?.getTime() ?? Date.now()) + row.budgetMs - Date.now();
}

async function runFresh(row: TripRow, options: DriveOptions): Promise<void> {
  const spans = new RollbackSpans();
  // The fence watch leaves the plan's fences to this run until it ends (fence-watch.ts says why).
  // Asked for now, waited for only before the fence step: a watch round in progress ends while the
  // run prepares and freezes (it used to hold the run up to 250 ms here, under load).
  const asked = spans.time("hold", () => holdFenceSync(options.control, row.planId));
  asked.catch(() => {});
  // Bounded: the ask runs on the lock's session, and a session cut off without a word (the server
  // ended it, this client heard nothing) never answers it. Unbounded, the run hung there for ever
  // and never saw that it had lost the trip's lock (break-pass3.test.ts: a watch round holding the
  // fences through the cut). Past the bound it goes on as if not held: fencing alongside the round.
  const holding = answeredWithin(asked, FENCE_SYNC_WAIT_MS + HOLD_ANSWER_MS, false);
  holding.catch(() => {}); // awaited before the fence, or in `finally`
  // The fence step's own record, written while the drain waits: a failure after it waits for it
  // before reading the trip back (the undo must not write the steps over it).
  let fencedNoted: Promise<void> = Promise.resolve();
  try {
    const fences = await spans.time("fences", () => loadPlanFences(row.planId));
    spans.mark("load");
    const { sequences, down, reverseSlots, firstPass } = await prepare(row, fences, options, spans);
    spans.mark("prepare");
    await options.pause("settling");
    const frozen = await settleAndFreeze(row, fences, options, spans);
    spans.mark("freeze");
    if (!frozen) return;
    if (!(await holding))
      options.log("a fence-watch round held the plan's fences past the wait; fencing alongside it");
    const { lsns, noted } = await fenceShards(row, fences, options, down, spans);
    fencedNoted = noted;
    spans.mark("fence");
    await options.pause("fenced", noted);
    await drainShards(row, fences, lsns, { sequences, firstPass }, options, down, reverseSlots, noted);
    spans.mark("drain");
    const held = await judgeDownShards(row, fences, down, options);
    await options.pause("drained");
    await flip(row, fences, options, held, spans);
    spans.mark("flip");
    await options.pause("flipped");
    await finish(row, fences, options, null);
    spans.mark("finish");
  } catch (error) {
    const lost = options.lockLost();
    if (error instanceof TripStateConflict || options.stopping() || lost !== null) {
      options.log(
        `${(error as Error).name} while rolling back${options.stopping() ? " (stopping)" : ""}${lost === null ? "" : ` (the trip's lock was lost: ${lost})`} (${(error as Error).message.slice(0, 200)}): left for recovery`,
      );
      throw error;
    }
    // A session cut off without a word (a proxy or the network dropped it: the server ended it and
    // freed the lock, this client heard nothing) leaves lockLost() null while another worker may
    // drive the trip already: the undo would unfreeze ITS freeze and end ITS attempt as failed
    // (break-pass3.test.ts). Asked of the control plane, not of that session.
    if (!(await holdsTripLock(options.control, row.id).catch(() => false))) {
      options.log(
        `${(error as Error).message.slice(0, 200)} — and the trip's lock is no longer held by this run's session: left for recovery`,
      );
      throw new TripStateConflict(`the trip's lock is no longer held by this run's session`);
    }
    // The undo goes through the lock's session too: the fence-sync lock's request ends first.
    await Promise.all([fencedNoted.catch(() => {}), holding.catch(() => false)]);
    const stored = await readTrip(row.id);
    if (stored) Object.assign(row, stored);
    if (row.flipVersion !== null) throw error; // past the commit point: the next tick finishes it
    const message =
      error instanceof GiveUp
        ? error.message
        : `The rollback failed before the flip: ${(error as Error).message}`;
    await undo(row, options, "gave-up", message);
  } finally {
    await holding.catch(() => false);
    // On the same session: bounded too (a session cut off never answers; it is ended after the run).
    await answeredWithin(releaseFenceSync(options.control, row.planId), HOLD_ANSWER_MS, undefined);
    options.log(`${row.tenants.length} tenants, ${spans}`);
  }
}

/** Whether the session of `control` holds the trip's lock now, read on another connection. */
async function holdsTripLock(control: pg.Client, tripId: string): Promise<boolean> {
  const pid = (control as unknown as { processID: number | null }).processID ?? 0;
  const [row] = await db().$queryRaw<{ held: boolean }[]>`
    select exists (select 1 from pg_locks l
                   where l.pid = ${pid}::int and l.locktype = 'advisory'
                     and l.classid = ${BREAKER_LOCK_CLASS}::oid
                     and l.objid = (hashtext(${tripId}::text)::bigint & 4294967295)::oid
                     and l.objsubid = 2 and l.granted) as held`;
  return row?.held ?? false;
}

/**
 * Null when the shard answers now; otherwise why not. First on the shard's pool (a connection it
 * already holds: under load a fresh connection took 0.7–1.9 s of the click-to-flip path); only if
 * that fails or does not answer in time, on a fresh connection, which alone says "down" (a pooled
 * connection may be one the server dropped at a restart).
 */
async function unreachable(shard: FencedDatabase): Promise<string | null> {
  let timer: NodeJS.Timeout | undefined;
  const pooled = await Promise.race([
    shard.pool.query("select 1").then(
      () => true,
      () => false,
    ),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), SHARD_PROBE_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  if (pooled) return null;
  try {
    await withClient(await databaseUrl(shard.databaseId), (c) => c.query("select 1"), {
      timeoutMs: SHARD_PROBE_TIMEOUT_MS,
      applicationName: "shardshift-breaker-probe",
    });
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * The shards of the set as it reads now; fences and slots ready, lags within the budget. Nothing
 * frozen. Shards that do not answer are returned as `down` (database id → why): no slot or lag can
 * be read there; judgeDownShards decides for their tenants after the others are drained.
 */
async function prepare(
  row: TripRow,
  fences: PlanFences,
  options: DriveOptions,
  spans: RollbackSpans,
): Promise<{
  sequences: string[];
  down: Map<string, string>;
  reverseSlots: Map<string, ReverseSlot>;
  firstPass: Promise<unknown>;
}> {
  // The reads that need nothing else, at once: they are on the path from the click to the freeze.
  const [movement, reading, sequences] = await spans.time("reads", () =>
    Promise.all([
      db().dataMovement.findUnique({ where: { planId: row.planId }, select: { status: true } }),
      tenantsInScope(db(), row.planId, row.scope),
      shardedSequences(fences.legacy.pool, fences.schema.tables),
    ]),
  );
  const owners = new Set(reading.onShards.map((t) => t.ownerId));
  const owning = fences.shards.filter((s) => owners.has(s.databaseId));
  const down = new Map<string, string>();
  // Each shard's probe, its slot check after it, and the sequences' first pass all run at once: on
  // the path from the click to the freeze, and a shard is rarely down.
  const probes = new Map(
    owning.map((shard) => [
      shard.databaseId,
      unreachable(shard).then((error) => {
        if (error) down.set(shard.databaseId, error);
        return error === null;
      }),
    ]),
  );
  const probed = spans.time("probe", () => Promise.all(probes.values()));
  // Reverse replication runs only while the movement runs or is paused. A shard that stays down
  // fails the movement (forward CDC cannot apply to it): its tenants need no drain (judgeDownShards
  // reads legacy alone), so only a set with a reachable shard needs the movement.
  if (movement?.status !== "running" && movement?.status !== "paused") {
    await probed;
    if (owning.length === 0 || owning.some((s) => !down.has(s.databaseId))) {
      throw new GiveUp(
        `The plan's data movement is ${movement?.status ?? "not started"}: reverse replication does not run, so nothing could be drained. Nothing was frozen.`,
      );
    }
  }
  const blockers: string[] = [];
  const reverseSlots = new Map<string, ReverseSlot>();
  // Sequences set a first time from every shard of the set that answers, so that the pass inside
  // the freeze (drainShards) only reads: not waited for here — it runs through the settling, the
  // freeze and the fence, and the drain's pass waits for it. Raises only: the passes cannot undo
  // each other.
  const sequencesSet = probed.then(() =>
    advanceSequencesFromAll(
      owning.filter((s) => !down.has(s.databaseId)).map((s) => s.pool),
      fences.legacy.pool,
      sequences,
      SEQUENCE_LEAD,
    ),
  );
  // Heard at once: awaited by the drain (or dropped with the run when it gives up), but it may fail
  // while the slots are still checked — or after prepare threw — and an unheard rejection ends the
  // worker process (break-prepare.test.ts).
  sequencesSet.catch(() => {});
  await Promise.all([
    spans.time("slots", () =>
      Promise.all(
        owning.map(async (shard) => {
          if (!(await probes.get(shard.databaseId))) return;
          const reverse = await ensureReverseSlot(shard.pool, {
            planId: row.planId,
            shardOrdinal: fences.shards.indexOf(shard),
            schema: fences.schema,
          });
          reverseSlots.set(shard.databaseId, reverse);
          const gap = reverseSlotGap(
            await legacyReverseOrigins(fences.legacy.pool, reverse.slot),
            reverse.slotLsn,
            shard.name,
          );
          if (gap) blockers.push(gap);
          const blocker = lagBlocker(
            "to-legacy",
            await reverseLagOnceStreaming(shard.pool, reverse.slot),
            row.budgetMs,
          );
          if (blocker) blockers.push(`${shard.name}: ${blocker}`);
        }),
      ),
    ),
    probed,
  ]);
  if (blockers.length > 0) throw new GiveUp(`Nothing was frozen: ${blockers.join(" ")}`);
  if (down.size > 0) {
    // A down shard's sequences cannot be read: legacy's are set past the rows it holds.
    await advanceSequencesPastRows(fences.legacy.pool, fences.schema.tables);
    const names = fences.shards.filter((s) => down.has(s.databaseId)).map((s) => s.name);
    options.log(`${names.join(", ")} down: its tenants are frozen on the map, not fenced`);
  }
  return { sequences, down, reverseSlots, firstPass: sequencesSet };
}

/**
 * Waits (before anything is frozen) for the scope's cutovers in flight to end, aborting those not
 * yet claimed; then, under the plan's row lock, reads the set and freezes it on the map in one
 * version. Returns false when the scope holds no tenant on a shard (the trip ends rolled back).
 */
async function settleAndFreeze(
  row: TripRow,
  fences: PlanFences,
  options: DriveOptions,
  spans: RollbackSpans,
): Promise<boolean> {
  const deadline = Date.now() + settleWindowMs(row.budgetMs);
  let routeMoved = false;
  for (;;) {
    const freezeStartedAt = new Date();
    const asked = performance.now();
    const outcome = await db()
      .$transaction(async (tx) => {
        spans.add("tx-start", performance.now() - asked);
        const settleFrom = performance.now();
        // The plan's row lock, and the trip's lock still held by this run's session: a run whose
        // session is gone (another worker may drive the trip now) freezes nothing.
        const [locked] = await tx.$queryRaw<{ held: boolean }[]>`
          select exists (select 1 from pg_locks l
                         where l.pid = ${(options.control as unknown as { processID: number | null }).processID ?? 0}::int and l.locktype = 'advisory'
                           and l.classid = ${BREAKER_LOCK_CLASS}::oid
                           and l.objid = (hashtext(${row.id}::text)::bigint & 4294967295)::oid
                           and l.objsubid = 2 and l.granted) as held
          from plan where id = ${row.planId}::uuid for no key update`;
        if (!locked?.held)
          throw new TripStateConflict(`the trip's lock is no longer held by this run's session`);
        const scope = await cutoversOfScope(tx, row.planId, row.scope);
        await tx.tenantCutover.updateMany({
          where: { AND: [scope, { status: "requested" }] },
          data: {
            status: "aborted",
            error: `Superseded by the breaker's rollback (trip ${row.id}): the tenant goes back to legacy.`,
            endedAt: new Date(),
          },
        });
        const inFlight = await tx.tenantCutover.findMany({
          where: scope,
          select: { tenantKey: true, status: true, direction: true },
        });
        if (inFlight.length > 0) return { wait: inFlight };
        spans.add("settle", performance.now() - settleFrom);
        const reading = await spans.time("scope", () => tenantsInScope(tx, row.planId, row.scope));
        const outcomes: Record<string, TenantOutcome> = {};
        for (const t of reading.onLegacy)
          outcomes[t] = { from: fences.legacy.name, outcome: "already_on_legacy" };
        if (reading.onShards.length === 0) return { empty: outcomes };
        const reason = `breaker rollback of ${reading.onShards.length} tenants: freeze (${row.reason})`;
        const changes = reading.onShards.map((t) => ({ tenantKey: t.tenantKey, frozen: true }));
        // Frozen where the set was read to be (the fences and drains go there): a tenant moved by
        // someone else since the read is read again (RouteNotAsExpected, like SS101).
        const owners = new Map<string, Expected>(
          reading.onShards.map((t) => [t.tenantKey, { ownerId: t.ownerId }]),
        );
        let freezeVersion: bigint | null = null;
        if (options.auditDraft) {
          // The map change and the trip's step in ONE statement (trip-map-change.ts).
          const step = stepOf(
            "frozen",
            `${reading.onShards.length} tenants frozen at map version ${VERSION_TOKEN}`,
          );
          const record = await spans.time("map", () =>
            writeTripMapChange(
              (sql, params) => tx.$queryRawUnsafe(sql, ...params),
              { planId: row.planId, changes, actor: SYSTEM, reason },
              options.auditDraft as RoutingAuditDraft,
              {
                id: row.id,
                from: row.status,
                steps: [...row.steps, step],
                tenants: reading.onShards,
                outcomes,
                freezeStartedAt,
                freezeVersion: true,
              },
              {
                // Decided on the scope read above, in this transaction (after a refusal, read again).
                known: routeMoved
                  ? undefined
                  : {
                      shards: fences.shards.map((s) => s.databaseId),
                      routes: new Map(
                        reading.onShards.map((t) => [
                          t.tenantKey,
                          { ownerId: t.ownerId, frozen: reading.frozen.has(t.tenantKey) },
                        ]),
                      ),
                    },
                expected: owners,
                time: (name, fn) => spans.time(name, fn),
              },
            ),
          );
          if (record) {
            freezeVersion = BigInt(record.version);
            step.note = step.note?.replace(VERSION_TOKEN, String(record.version));
            row.steps = [...row.steps, step];
          }
        }
        if (freezeVersion === null) {
          if (!options.auditDraft) {
            const routes = await lockedRoutes(tx, row.planId, [...owners.keys()]);
            const moved = routesNotAsExpected(routes, owners);
            if (moved.length > 0) throw new RouteNotAsExpected(moved);
          }
          const record = options.auditDraft
            ? null
            : await spans.time("map", () =>
                writeRoutingChange(tx, { planId: row.planId, changes, actor: SYSTEM, reason }, options.audit),
              );
          freezeVersion = BigInt(record?.version ?? 0);
          await noteTripStep(
            row,
            "frozen",
            {
              tenants: reading.onShards as unknown as Prisma.InputJsonValue,
              outcomes: outcomes as unknown as Prisma.InputJsonValue,
              freezeVersion,
              freezeStartedAt,
            },
            { store: tx, note: `${reading.onShards.length} tenants frozen at map version ${freezeVersion}` },
          );
        }
        return { frozen: { tenants: reading.onShards, outcomes, freezeVersion } };
      }, TX)
      .catch((error: unknown) => {
        const code = sqlStateOf(error);
        if (code === TRIP_MOVED_SQLSTATE) throw new TripStateConflict((error as Error).message);
        // A route moved between the read and the write (an operator's own map change): nothing
        // was written; read the set again, like a cutover still in flight.
        if (code === ROUTE_MOVED_SQLSTATE || error instanceof RouteNotAsExpected) {
          routeMoved = true;
          return { wait: [] };
        }
        throw error;
      });
    if ("frozen" in outcome && outcome.frozen) {
      Object.assign(row, { ...outcome.frozen, freezeStartedAt });
      options.log(`froze ${row.tenants.length} tenants (map version ${row.freezeVersion})`);
      return true;
    }
    if ("empty" in outcome && outcome.empty) {
      const note = "No tenant of the scope is on a shard: nothing to roll back.";
      await advanceTrip(
        row,
        "finished",
        { outcomes: outcome.empty as unknown as Prisma.InputJsonValue, endedAt: new Date(), error: null },
        { note },
      );
      await reportEnd(row, options, "breaker.rollback.finished", note);
      return false;
    }
    const waiting = "wait" in outcome ? (outcome.wait ?? []) : [];
    if (Date.now() >= deadline) {
      throw new GiveUp(
        `Cutovers of ${waiting.length} tenants of the scope were still in flight after ${Math.round(settleWindowMs(row.budgetMs) / 1000)} s (${waiting
          .slice(0, 5)
          .map((c) => `${c.tenantKey} ${c.direction} ${c.status}`)
          .join(
            ", ",
          )}${waiting.length > 5 ? ", …" : ""}): nothing was frozen. Trip again once they have ended.`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A fence transaction chosen as a deadlock's victim (40P01) is tried again, at most this many times in all. */
const FENCE_DEADLOCK_ATTEMPTS = 5;
const DEADLOCK_SQLSTATE = "40P01";

/** The set's shards (but those in `skip`: down): each with its tenants of the set. */
function shardsOfSet(
  row: TripRow,
  fences: PlanFences,
  skip: ReadonlyMap<string, string> = new Map(),
): { shard: FencedDatabase; tenants: string[] }[] {
  return fences.shards
    .filter((shard) => !skip.has(shard.databaseId))
    .map((shard) => ({
      shard,
      tenants: row.tenants.filter((t) => t.ownerId === shard.databaseId).map((t) => t.tenantKey),
    }))
    .filter((s) => s.tenants.length > 0);
}

/**
 * One fence transaction per shard, shards in parallel: each returns once every transaction that
 * wrote one of the set there has ended, with the freeze position P of that shard.
 */
async function fenceShards(
  row: TripRow,
  fences: PlanFences,
  options: DriveOptions,
  down: ReadonlyMap<string, string>,
  spans?: RollbackSpans,
): Promise<{ lsns: Map<string, bigint>; noted: Promise<void> }> {
  const version = Number(row.freezeVersion ?? 0);
  const results = await Promise.all(
    shardsOfSet(row, fences, down).map(async ({ shard, tenants }) => {
      try {
        const from = performance.now();
        // An application transaction that writes several tenants of the set on this shard holds
        // one tenant's shared lock while it waits for another's, which the fence may already hold
        // exclusively: PostgreSQL ends the cycle by aborting one of them (40P01), often the fence,
        // which waited first. Nothing of it was written: it is tried again within the budget (the
        // writer goes on meanwhile and its commit is below the next attempt's position).
        for (let attempt = 1; ; attempt++) {
          try {
            const lsn = await freezeSetOn(
              fences,
              shard,
              tenants,
              row.tenants,
              version,
              Math.max(50, remaining(row)),
              (name, ms) => spans?.add(`${shard.name} ${name}`, ms),
            );
            spans?.add(`fence ${shard.name}`, performance.now() - from);
            return { shard, lsn };
          } catch (error) {
            if (
              sqlStateOf(error) !== DEADLOCK_SQLSTATE ||
              attempt >= FENCE_DEADLOCK_ATTEMPTS ||
              remaining(row) <= 50
            )
              throw error;
            options.log(
              `fence on ${shard.name}: deadlock with a writer of the set (attempt ${attempt}), trying again`,
            );
          }
        }
      } catch (error) {
        return { shard, error: (error as Error).message };
      }
    }),
  );
  const failed = results.filter((r) => r.error !== undefined);
  if (failed.length > 0) {
    throw new GiveUp(
      `Could not fence the set within the ${row.budgetMs} ms budget: ${failed.map((f) => `${f.shard.name}: ${f.error}`).join("; ")}. Every fence was lifted; the tenants stay on their shards.`,
    );
  }
  const lsns = new Map(results.map((r) => [r.shard.name, r.lsn as bigint]));
  const freezeLsns = Object.fromEntries([...lsns].map(([name, lsn]) => [name, formatLsn(lsn)]));
  row.freezeLsns = freezeLsns;
  // The step is recorded while the drain waits (nothing reads it to recover: the flip's version
  // decides); the drain's own step is written after it.
  const noting = performance.now();
  const noted = noteTripStep(row, "fenced", { freezeLsns }, { note: JSON.stringify(freezeLsns) }).then(() =>
    spans?.add("fence-note", performance.now() - noting),
  );
  noted.catch(() => {});
  // Legacy learns of the freeze too (it refuses these tenants already: a shard owns them).
  void syncPlanFences(fences, { only: [fences.legacy], lockTimeoutMs: 2_000 }).catch(() => {});
  options.log(
    `fenced on ${[...lsns.keys()].join(", ")} ${Date.now() - (row.freezeStartedAt?.getTime() ?? 0)} ms into the freeze`,
  );
  return { lsns, noted };
}

/**
 * Brings the shard's fence to at least `version` and returns its freeze position — what
 * syncPlanFences does for one database, but with the map's routes read in ONE statement (one
 * snapshot: the map's version and every route changed since the shard's) instead of an interactive
 * transaction: inside the freeze a busy worker's pool must not make it wait for a transaction slot
 * (seen under load: "Unable to start a transaction in the given time"). When the fence watch got
 * there first, a second fence transaction for the set (same routes, the version the shard already
 * holds, whose change already raised its epoch) takes the tenants' locks again for the position.
 */
async function freezeSetOn(
  fences: PlanFences,
  shard: FencedDatabase,
  tenants: string[],
  set: readonly { tenantKey: string; ownerId: string }[],
  version: number,
  lockTimeoutMs: number,
  span: (name: string, ms: number) => void = () => {},
): Promise<bigint> {
  let from = performance.now();
  const lap = (name: string) => {
    const now = performance.now();
    span(name, now - from);
    from = now;
  };
  const state = await readFenceState(shard.pool);
  lap("state");
  if (!state || state.planId !== fences.planId) throw new Error("no fence of this plan is installed there");
  // The common case: the fence holds every version but the freeze's. The freeze's change is known
  // here — the whole set frozen where it is, one version — so the map need not be read (no
  // control-plane round trip inside the freeze). The whole change is written, not only this
  // shard's tenants: a held trip's tenants (their shard down) stay frozen at this version on the
  // map, no later version names them, and a fence at this version must hold them as the map does
  // (break-prepare.test.ts). Only this shard's own tenants are waited out (lockOnly): another
  // database's are refused here before and after alike.
  const names = {
    legacyName: fences.legacy.name,
    shardNames: new Map(fences.shards.map((s) => [s.databaseId, s.name])),
  };
  if (state.mapVersion === version - 1) {
    const result = await syncFence(shard.pool, {
      planId: fences.planId,
      databaseName: shard.name,
      routes: set.map((t) =>
        fenceRouteOf({ tenantKey: t.tenantKey, ownerDatabaseId: t.ownerId, frozen: true, version }, names),
      ),
      version,
      lockTimeoutMs,
      lockOnly: tenants,
    });
    lap("sync");
    return result.lsn;
  }
  if (state.mapVersion < version) {
    const [read] = await db().$queryRaw<{ version: bigint | null; routes: RouteRow[] | null }[]>`
      select (select version from routing_map where plan_id = ${fences.planId}::uuid) as version,
             (select json_agg(json_build_object('tenantKey', tenant_key, 'ownerDatabaseId', owner_database_id,
                                                'frozen', frozen, 'version', version))
              from tenant_route where plan_id = ${fences.planId}::uuid and version > ${state.mapVersion}) as routes`;
    lap(`routes ${read?.routes?.length ?? 0}`);
    const result = await syncFence(shard.pool, {
      planId: fences.planId,
      databaseName: shard.name,
      routes: (read?.routes ?? []).map((r) => fenceRouteOf({ ...r, version: Number(r.version) }, names)),
      version: Number(read?.version ?? 0),
      lockTimeoutMs,
      // Only the set's tenants here are waited out (syncFence says why).
      lockOnly: tenants,
    });
    lap("sync");
    return result.lsn;
  }
  const result = await syncFence(shard.pool, {
    planId: fences.planId,
    databaseName: shard.name,
    routes: tenants.map((tenantKey) => ({
      tenantKey,
      ownerKey: shard.key,
      ownerName: shard.name,
      frozen: true,
      version,
    })),
    version: state.mapVersion,
    lockTimeoutMs,
  });
  return result.lsn;
}

interface RouteRow {
  tenantKey: string;
  ownerDatabaseId: string | null;
  frozen: boolean;
  version: number | string;
}

/** Reverse replication of every shard of the set, in parallel, durably on legacy up to its P. */
async function drainShards(
  row: TripRow,
  fences: PlanFences,
  lsns: Map<string, bigint>,
  { sequences, firstPass }: { sequences: string[]; firstPass: Promise<unknown> },
  options: DriveOptions,
  down: ReadonlyMap<string, string>,
  reverseSlots: ReadonlyMap<string, ReverseSlot>,
  fencedNoted: Promise<void> = Promise.resolve(),
): Promise<void> {
  const deadline = (row.freezeStartedAt?.getTime() ?? Date.now()) + row.budgetMs;
  const set = shardsOfSet(row, fences, down);
  // Legacy's sequences past every fenced shard's, in one pass (advanceSequencesFromAll says why
  // not one per shard), while reverse replication drains: the fences are committed, so no row of
  // the set takes a value on a shard from now on. Harmless if the drain falls short (a sequence is
  // only ever raised).
  // After the first pass (its failure is this one's to meet: this pass alone is what the flip needs).
  const advanced = firstPass
    .catch(() => {})
    .then(() =>
      advanceSequencesFromAll(
        set.map((s) => s.shard.pool),
        fences.legacy.pool,
        sequences,
      ),
    );
  advanced.catch(() => {}); // awaited below; heard now so a failure meanwhile is not unhandled
  const results = await Promise.all(
    set.map(async ({ shard }) => {
      const lsn = lsns.get(shard.name) ?? 0n;
      const reverse =
        reverseSlots.get(shard.databaseId) ??
        (await ensureReverseSlot(shard.pool, {
          planId: row.planId,
          shardOrdinal: fences.shards.indexOf(shard),
          schema: fences.schema,
        }));
      const drained = await waitForOriginProgress(
        fences.legacy.pool,
        reverseOriginName(reverse.slot, reverse.slotLsn),
        lsn,
        deadline,
      );
      return { shard, lsn, drained };
    }),
  );
  const short = results.filter((r) => !r.drained.reached);
  await fencedNoted;
  if (short.length > 0) {
    await advanced;
    throw new GiveUp(
      `Reverse replication had not brought legacy up to the freeze position of ${short
        .map(
          (s) =>
            `${s.shard.name} (${formatLsn(s.drained.progress ?? 0n)} of ${formatLsn(s.lsn)}${drainShortfallNote(s.drained, s.lsn)})`,
        )
        .join(
          ", ",
        )} when the ${row.budgetMs} ms freeze budget ran out; nothing was flipped, the fences were lifted and the tenants stay on their shards. Trip again when reverse lag is lower, or with a larger budget.`,
    );
  }
  await Promise.all([
    advanced,
    noteTripStep(
      row,
      "drained",
      {},
      { note: `${Date.now() - (row.freezeStartedAt?.getTime() ?? 0)} ms into the freeze` },
    ),
  ]);
  options.log(
    `drained ${results.length} shards ${Date.now() - (row.freezeStartedAt?.getTime() ?? 0)} ms into the freeze`,
  );
  // The budget bounds how long routers wait on writes a shard could take; a set made only of down
  // shards' tenants has none (their owner cannot be written), so no budget can run out for it.
  if (remaining(row) <= 0 && results.length > 0) {
    throw new GiveUp(
      `The ${row.budgetMs} ms freeze budget ran out before the flip (drained, sequences set); nothing was flipped, the tenants stay on their shards.`,
    );
  }
}

/**
 * For each DOWN shard of the set: whether legacy is known to hold every write the shard
 * acknowledged — its reverse progress on legacy (durable), or the slot's confirmed position at the
 * shard's last answered probe, at or past the flushed position that probe recorded. Returns the
 * tenants that must be held (tenant → reason); records the judgement as a step of the trip.
 */
async function judgeDownShards(
  row: TripRow,
  fences: PlanFences,
  down: ReadonlyMap<string, string>,
  options: DriveOptions,
): Promise<Map<string, string>> {
  const held = new Map<string, string>();
  if (down.size === 0) return held;
  const notes: string[] = [];
  for (const shard of fences.shards.filter((s) => down.has(s.databaseId))) {
    const tenants = row.tenants.filter((t) => t.ownerId === shard.databaseId).map((t) => t.tenantKey);
    if (tenants.length === 0) continue;
    const ordinal = fences.shards.indexOf(shard);
    const [last, origins, stillDown] = await Promise.all([
      lastKnownPosition(row.planId, ordinal),
      legacyReverseOrigins(fences.legacy.pool, reverseSlotName(row.planId, ordinal)).catch(() => null),
      unreachable(shard),
    ]);
    const progress = origins?.at(-1)?.progress ?? null;
    if (stillDown === null) {
      // It answers again: the premise of flipping without a fence ("its owner cannot be written")
      // no longer holds. It was never fenced nor drained, and routers that have not read the map
      // yet may write there until the fence watch reaches it; the positions of its last probe say
      // nothing of those writes. Held: re-arming rolls them back normally (fence, drain, flip).
      const reason = `${tenants.length} tenants held: ${shard.name} did not answer when the rollback was prepared (${down.get(shard.databaseId)}) but answers again, unfenced and not drained, so writes it took since cannot be confirmed on legacy. They stay frozen on ${shard.name}: re-arm to finish their rollback.`;
      notes.push(reason);
      for (const t of tenants) held.set(t, reason);
      continue;
    }
    // The proof's slot: the one the last probe read its confirmed position from, or legacy's
    // newest. An earlier slot's origin that stops short of it is a gap no position can cover.
    const proofSlot = [last?.reverseSlotLsn ?? null, origins?.at(-1)?.slotLsn ?? null].reduce<bigint | null>(
      (m, v) => (v === null ? m : m === null || v > m ? v : m),
      null,
    );
    const gap =
      origins === null
        ? `legacy's replication origins of ${shard.name} could not be read.`
        : proofSlot === null
          ? null
          : reverseSlotGap(origins, proofSlot, shard.name);
    if (gap) {
      const reason = `${tenants.length} tenants held: ${shard.name} is down (${down.get(shard.databaseId)}) and ${gap} They stay frozen on ${shard.name}.`;
      notes.push(reason);
      for (const t of tenants) held.set(t, reason);
      continue;
    }
    const confirmed = [progress, last?.reverseConfirmedLsn ?? null].reduce<bigint | null>(
      (m, v) => (v === null ? m : m === null || v > m ? v : m),
      null,
    );
    const at = last ? last.at.toISOString().slice(11, 19) : null;
    if (last && confirmed !== null && confirmed >= last.flushLsn) {
      notes.push(
        `${shard.name} is down (${down.get(shard.databaseId)}); legacy holds its writes up to ${formatLsn(confirmed)}, at or past ${formatLsn(last.flushLsn)}, the last position it flushed when it answered at ${at}: its ${tenants.length} tenants flip.`,
      );
      continue;
    }
    const reason = last
      ? `${tenants.length} tenants held: writes after LSN ${formatLsn(confirmed ?? 0n)} on ${shard.name} cannot be confirmed because the shard is down (it had flushed up to ${formatLsn(last.flushLsn)} when it last answered, at ${at}; legacy holds its reverse stream only up to ${formatLsn(confirmed ?? 0n)}). They stay frozen on ${shard.name}: re-arm once it is back to finish their rollback.`
      : `${tenants.length} tenants held: no position of ${shard.name} was recorded while it answered, so no write it acknowledged can be confirmed on legacy while it is down. They stay frozen on ${shard.name}: re-arm once it is back to finish their rollback.`;
    notes.push(reason);
    for (const t of tenants) held.set(t, reason);
  }
  await noteTripStep(row, "down-shards-judged", {}, { note: notes.join(" ") });
  options.log(notes.join(" "));
  return held;
}

/**
 * The commit point: every tenant of the set owned by legacy (still frozen), in one map version —
 * but the `held` ones (a down shard's, not confirmed on legacy), which stay frozen on their shard.
 */
async function flip(
  row: TripRow,
  fences: PlanFences,
  options: DriveOptions,
  held: ReadonlyMap<string, string>,
  spans?: RollbackSpans,
): Promise<void> {
  const names = new Map(fences.shards.map((s) => [s.databaseId, s.name]));
  const flippedAt = new Date();
  const moving = row.tenants.filter((t) => !held.has(t.tenantKey));
  const outcomes = { ...row.outcomes };
  for (const t of row.tenants) {
    const reason = held.get(t.tenantKey);
    outcomes[t.tenantKey] = reason
      ? { from: names.get(t.ownerId) ?? t.ownerId, outcome: "held", reason }
      : { from: names.get(t.ownerId) ?? t.ownerId, outcome: "rolled_back" };
  }
  if (moving.length === 0) {
    // Nothing flips: no map version is the commit point, the trip ends held (finish()).
    await noteTripStep(row, "held", { outcomes: outcomes as unknown as Prisma.InputJsonValue });
    row.outcomes = outcomes;
    return;
  }
  const changes = moving.map((t) => ({ tenantKey: t.tenantKey, ownerId: null, frozen: true }));
  // Only what was fenced and drained flips: each tenant still frozen on the shard it was read on.
  // A route changed since (an operator unfroze or moved it) is no longer covered by the drain —
  // its owner may have taken writes past the fence position — so the whole set gives up.
  const fenced = new Map<string, Expected>(
    moving.map((t) => [t.tenantKey, { ownerId: t.ownerId, frozen: true }]),
  );
  const movedAway = (error: RouteNotAsExpected) =>
    new GiveUp(
      `A route of the set changed after the freeze (${error.message}): the drain did not cover it, so nothing was flipped; the fences were lifted and the tenants stay on their shards. Trip again once the map is as intended.`,
    );
  const reason = `breaker rollback of ${moving.length} tenants: flip to legacy (${row.reason})`;
  const heldNote = held.size ? `; ${held.size} tenants held` : "";
  if (options.auditDraft) {
    // The commit point in ONE statement on the runner's own connection (trip-map-change.ts): every
    // owner, the history, the audit event and the trip's flip version commit together.
    const step = stepOf("flipped", `map version ${VERSION_TOKEN}${heldNote}`);
    for (let attempt = 1; ; attempt++) {
      try {
        const record = await writeTripMapChange(
          (sql, params) => options.control.query(sql, params).then((r) => r.rows),
          { planId: row.planId, changes, actor: SYSTEM, reason },
          options.auditDraft,
          {
            id: row.id,
            from: row.status,
            steps: [...row.steps, step],
            outcomes,
            flippedAt,
            flipVersion: true,
          },
          {
            // The set as the freeze left it (frozen on its shards); a refusal reads the map again,
            // and the read must still show it so (`fenced`).
            known:
              attempt === 1
                ? {
                    shards: fences.shards.map((s) => s.databaseId),
                    routes: new Map(moving.map((t) => [t.tenantKey, { ownerId: t.ownerId, frozen: true }])),
                  }
                : undefined,
            expected: fenced,
            time: spans ? (name, fn) => spans.time(name, fn) : undefined,
          },
        );
        if (record) {
          step.note = step.note?.replace(VERSION_TOKEN, String(record.version));
          row.steps = [...row.steps, step];
          row.flipVersion = BigInt(record.version);
          row.flippedAt = flippedAt;
          row.outcomes = outcomes;
        }
        break;
      } catch (error) {
        if (error instanceof RouteNotAsExpected) throw movedAway(error);
        const code = sqlStateOf(error);
        if (code === TRIP_MOVED_SQLSTATE) throw new TripStateConflict((error as Error).message);
        if (code !== ROUTE_MOVED_SQLSTATE || attempt >= 5) throw error;
      }
    }
  }
  if (row.flipVersion === null) {
    // Without a drafter (or nothing left to change on the map): the interactive transaction.
    await db().$transaction(async (tx) => {
      const moved = routesNotAsExpected(
        await lockedRoutes(
          tx,
          row.planId,
          moving.map((t) => t.tenantKey),
        ),
        fenced,
      );
      if (moved.length > 0) throw movedAway(new RouteNotAsExpected(moved));
      const record = options.auditDraft
        ? null
        : await writeRoutingChange(tx, { planId: row.planId, changes, actor: SYSTEM, reason }, options.audit);
      const flipVersion = BigInt(record?.version ?? 0);
      await noteTripStep(
        row,
        "flipped",
        { flipVersion, flippedAt, outcomes: outcomes as unknown as Prisma.InputJsonValue },
        { store: tx, note: `map version ${flipVersion}${heldNote}` },
      );
      row.flipVersion = flipVersion;
      row.flippedAt = flippedAt;
      row.outcomes = outcomes;
    }, TX);
  }
  options.log(`flipped ${moving.length} tenants to legacy (map version ${row.flipVersion})`);
}

/** The tenants a held trip keeps frozen on their (down) shard, and why (one line per reason). */
function heldOf(row: TripRow): { tenants: Set<string>; message: string | null } {
  const entries = Object.entries(row.outcomes).filter(([, o]) => o.outcome === "held");
  const reasons = [...new Set(entries.map(([, o]) => o.reason ?? ""))].filter(Boolean);
  return { tenants: new Set(entries.map(([t]) => t)), message: entries.length ? reasons.join(" ") : null };
}

/** From the commit point on (idempotent): the map unfreezes the set, legacy's fence first, then every fence. */
async function finish(
  row: TripRow,
  fences: PlanFences,
  options: DriveOptions,
  note: string | null,
): Promise<void> {
  const freezeEndedAt = row.freezeEndedAt ?? new Date();
  const held = heldOf(row);
  const moved = row.tenants.filter((t) => !held.tenants.has(t.tenantKey));
  await db().$transaction(async (tx) => {
    if (moved.length > 0) {
      await writeRoutingChange(
        tx,
        {
          planId: row.planId,
          changes: moved.map((t) => ({ tenantKey: t.tenantKey, ownerId: null, frozen: false })),
          actor: SYSTEM,
          reason: `breaker rollback of ${moved.length} tenants: unfreeze on legacy (${row.reason})`,
        },
        options.audit,
      );
    }
    await tx.breakerTrip.update({ where: { id: row.id }, data: { freezeEndedAt } });
  }, TX);
  row.freezeEndedAt = freezeEndedAt;
  // Legacy first: routers that read the unfrozen map find its fence open, at worst after one retry.
  await syncPlanFences(fences, { only: [fences.legacy], lockTimeoutMs: 5_000 });
  await syncEveryFence(fences, options);
  const freezeMs = row.freezeStartedAt ? freezeEndedAt.getTime() - row.freezeStartedAt.getTime() : null;
  const message = `${moved.length} tenants back on legacy${row.flipVersion === null ? "" : ` in map version ${row.flipVersion}`}${freezeMs === null ? "" : `, writes frozen ${freezeMs} ms`}${row.flippedAt ? `, ${row.flippedAt.getTime() - row.createdAt.getTime()} ms from the trip to the flip` : ""}${note ? ` (${note})` : ""}.`;
  if (held.message) {
    // The plan stays tripped: a human decides once the shard is back (re-arm finishes the rollback).
    const error = `${message} ${held.message}`;
    await advanceTrip(row, "held", { endedAt: new Date(), error }, { note: error });
    await reportEnd(row, options, "breaker.rollback.held", error);
    options.log(`held: ${error}`);
    return;
  }
  await advanceTrip(row, "finished", { endedAt: new Date(), error: null }, { note: message });
  await reportEnd(row, options, "breaker.rollback.finished", message);
  options.log(`done: ${message}`);
}

/** Before the commit point: the set's freeze lifts, the shards keep their tenants. */
async function undo(
  row: TripRow,
  options: DriveOptions,
  event: "interrupted" | "gave-up",
  message: string,
): Promise<void> {
  const outcomes = { ...row.outcomes };
  // A trip that gives up for good also releases what it was emitted to finish: tenants an earlier
  // trip HELD (frozen on their shard, re-arming emits a trip of them) that this one never froze
  // itself — it gave up before its freeze (the movement stopped, a lag or slot blocker). Nothing
  // else unfreezes them: no later trip names them, and a re-arm of this one (no held outcome)
  // emits nothing, so they stayed frozen for good. Unfrozen on their shard, the owner, which holds
  // every write of theirs (break-pass3.test.ts).
  const stranded = event === "gave-up" ? await heldByEarlierTrips(row) : [];
  if (row.tenants.length > 0 || stranded.length > 0) {
    const fences = await loadPlanFences(row.planId);
    const names = new Map(fences.shards.map((s) => [s.databaseId, s.name]));
    const { elsewhere, released } = await db().$transaction(async (tx) => {
      // Unfrozen where they are, never moved: before the flip the trip changed no owner, so a
      // tenant owned by another database now was moved by someone else (an operator's change) and
      // is left as they left it — moving it back would hand it over without a drain.
      const routes = await lockedRoutes(tx, row.planId, [
        ...row.tenants.map((t) => t.tenantKey),
        ...stranded,
      ]);
      const mine = row.tenants.filter((t) => (routes.get(t.tenantKey)?.ownerId ?? null) === t.ownerId);
      // Held ones still frozen on a shard, none a cutover's (its own freeze).
      const busy = new Set(
        stranded.length === 0
          ? []
          : (
              await tx.tenantCutover.findMany({
                where: { planId: row.planId, tenantKey: { in: stranded }, status: { in: CUTOVER_IN_FLIGHT } },
                select: { tenantKey: true },
              })
            ).map((c) => c.tenantKey),
      );
      const released = stranded
        .filter((t) => !busy.has(t))
        .flatMap((t) => {
          const route = routes.get(t);
          return route?.frozen && route.ownerId !== null ? [{ tenantKey: t, ownerId: route.ownerId }] : [];
        });
      if (mine.length > 0 || released.length > 0 || row.tenants.length > 0) {
        await writeRoutingChange(
          tx,
          {
            planId: row.planId,
            changes: [...mine, ...released].map((t) => ({ tenantKey: t.tenantKey, frozen: false })),
            actor: SYSTEM,
            reason: `breaker rollback of ${row.tenants.length + released.length} tenants undone before the flip: unfreeze on their shards`,
          },
          options.audit,
        );
      }
      return { elsewhere: row.tenants.filter((t) => !mine.includes(t)).map((t) => t.tenantKey), released };
    }, TX);
    if (elsewhere.length > 0)
      options.log(`undo: ${elsewhere.join(", ")} moved by someone else since the freeze, left as they are`);
    if (released.length > 0)
      options.log(
        `undo: ${released.map((t) => t.tenantKey).join(", ")} held by an earlier trip, unfrozen on their shards`,
      );
    await syncEveryFence(fences, options);
    for (const t of [...row.tenants, ...released])
      outcomes[t.tenantKey] = {
        from: names.get(t.ownerId) ?? t.ownerId,
        outcome: "left_on_shard",
        reason: message,
      };
  }
  const freezeEndedAt = row.freezeStartedAt ? new Date() : null;
  if (event === "interrupted") {
    // Back to `tripped`: the trip still stands and is driven afresh (its set read again).
    await advanceTrip(
      row,
      "interrupted",
      {
        error: message,
        outcomes: outcomes as unknown as Prisma.InputJsonValue,
        tenants: [],
        freezeLsns: {},
        freezeVersion: null,
        freezeStartedAt: null,
      },
      { note: message },
    );
    await reportEnd(row, options, "breaker.rollback.interrupted", message);
  } else {
    await giveUp(row, options, message, { outcomes, freezeEndedAt });
  }
  options.log(`${event}: ${message}`);
}

/**
 * The tenants named by this trip (a re-arm's trip of held tenants names them) that it did not freeze
 * itself and that an earlier trip of the plan held; undo() unfreezes those still frozen on a shard.
 */
async function heldByEarlierTrips(row: TripRow): Promise<string[]> {
  if (row.scope.kind !== "tenants") return [];
  const frozenByMe = new Set(row.tenants.map((t) => t.tenantKey));
  const named = [...new Set(row.scope.tenants)].filter((t) => !frozenByMe.has(t));
  if (named.length === 0) return [];
  const earlier = await db().breakerTrip.findMany({
    where: { planId: row.planId, id: { not: row.id }, createdAt: { lte: row.createdAt } },
    select: { outcomes: true },
  });
  const held = new Set<string>();
  for (const trip of earlier)
    for (const [tenant, outcome] of Object.entries(
      (trip.outcomes ?? {}) as unknown as Record<string, TenantOutcome>,
    ))
      if (outcome?.outcome === "held") held.add(tenant);
  return named.filter((t) => held.has(t));
}

async function giveUp(
  row: TripRow,
  options: DriveOptions,
  message: string,
  extra: { outcomes?: Record<string, TenantOutcome>; freezeEndedAt?: Date | null } = {},
): Promise<void> {
  await advanceTrip(
    row,
    "gave-up",
    {
      error: message,
      endedAt: new Date(),
      ...(extra.outcomes ? { outcomes: extra.outcomes as unknown as Prisma.InputJsonValue } : {}),
      ...(extra.freezeEndedAt ? { freezeEndedAt: extra.freezeEndedAt } : {}),
    },
    { note: message },
  );
  await reportEnd(row, options, "breaker.rollback.failed", message);
}

/** The end of an attempt: an engine event on the plan and its audit event. */
async function reportEnd(
  row: TripRow,
  options: DriveOptions,
  action: string,
  message: string,
): Promise<void> {
  // Not "error": one error event with source "breaker" is the trip itself (load-facts.ts counts them).
  const level = action.endsWith("finished") ? "info" : "warn";
  await db()
    .$transaction(async (tx) => {
      await recordEngineEvent(row.planId, level, "breaker", `Breaker rollback: ${message}`, tx);
      await options.breakerAudit(tx, {
        action,
        planId: row.planId,
        tripId: row.id,
        after: {
          status: row.status,
          tenants: row.tenants.length,
          flipVersion: row.flipVersion === null ? null : Number(row.flipVersion),
          freezeMs:
            row.freezeStartedAt && row.freezeEndedAt
              ? row.freezeEndedAt.getTime() - row.freezeStartedAt.getTime()
              : null,
          attempt: row.attempts,
        },
        reason: message,
      });
    })
    .catch((error) => options.log(`could not record the end: ${(error as Error).message}`));
}

/** Brings every fence up to the map, a few tries each; one left behind is the fence watch's to finish. */
async function syncEveryFence(fences: PlanFences, options: DriveOptions): Promise<void> {
  let targets = fences.all;
  for (let attempt = 1; attempt <= 3 && targets.length > 0; attempt++) {
    const outcomes = await syncPlanFences(fences, { only: targets });
    const failed = new Set(outcomes.filter((o) => o.error).map((o) => o.database));
    for (const outcome of outcomes)
      if (outcome.error) options.log(`fence on ${outcome.database}: ${outcome.error}`);
    targets = targets.filter((t) => failed.has(t.name));
  }
}
