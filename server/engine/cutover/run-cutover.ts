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
//   together: freeze + 'fencing', owner + 'flipped' (the commit point), unfreeze + 'done'.
// - Fences are brought up to the map with syncPlanFences (a consistent read of every route since
//   the version each database holds), never with a hand-made version: a fence that claimed a map
//   version before it held every change of it would never receive what it missed.
// - Test hook: SHARDSHIFT_CUTOVER_PAUSE_AT=<status> makes the runner wait once it reached that
//   status (before its step's work), so a crash test can kill the worker exactly there.
import pg from "pg";
import type { SourceSchema } from "../analysis/introspect";
import { applyOriginName } from "../cdc/apply-origin";
import { formatLsn, parseLsn } from "../cdc/slot";
import { readFenceState, syncFence } from "../routing/fence";
import {
  type FencedDatabase,
  installPlanFences,
  loadPlanFences,
  type PlanFences,
  syncPlanFences,
} from "../routing/plan-fences";
import { type RoutingAuditWriter, writeRoutingChange } from "../routing/routing-map";
import { cutoverInFlight, recoveryFor } from "../state/cutover";
import { db } from "../store/db";
import { recordEngineEvent } from "../store/movement-context";
import { ensureReverseSlot, reverseLagMs, reverseOriginName, waitForOriginProgress } from "./cdc-links";
import { advanceCutover, type CutoverRow, CutoverStateConflict, readCutover } from "./cutover-store";
import { feedingStream, lagBlocker, recentLagMs } from "./precheck";
import { advanceSequences, shardedSequences } from "./sequences";

/** Advisory lock class (two-int form) of an attempt: held by the session of the worker driving it. */
export const CUTOVER_LOCK_CLASS = 7_363_800;

export interface CutoverRunOptions {
  /** Names this worker process in the attempt's row. */
  worker: string;
  controlPlaneUrl: string;
  audit: RoutingAuditWriter;
  log: (message: string) => void;
  /**
   * Test hook (SHARDSHIFT_CUTOVER_PAUSE_AT): wait once this status is reached — "<status>" for
   * every attempt, or "<status>:<tenant>,…" for those tenants' attempts only.
   */
  pauseAt?: string | null;
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
      tenant =
        (await db().tenantCutover.findUnique({ where: { id: cutoverId }, select: { tenantKey: true } }))
          ?.tenantKey ?? null;
      await driveCutover(cutoverId, {
        ...options,
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
  pause(status: string): Promise<void>;
  stopping(): boolean;
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
  slotName: string;
  slotLsn: bigint;
}

async function loadContext(row: CutoverRow): Promise<Context> {
  const fences = await loadPlanFences(row.planId);
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
    slotName: movement.slotName,
    slotLsn: parseLsn(movement.slotLsn ?? "0/0"),
  };
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

function remaining(row: CutoverRow): number {
  const start = row.freezeStartedAt?.getTime() ?? Date.now();
  return start + row.budgetMs - Date.now();
}

class Abort extends Error {}

async function runFresh(row: CutoverRow, options: DriveOptions): Promise<void> {
  try {
    await options.pause("prechecking");
    const ctx = await loadContext(row);
    await precheck(ctx, options);
    await fence(ctx, options);
    await options.pause("fencing");
    await drainAndFlip(ctx, options);
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
    if (stored) Object.assign(row, stored);
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
  if (!map?.fenceInstalledAt) await installFencesOnce(ctx, options);
  // The reverse stream's slot must exist before the shard owns the tenant: every write there from
  // the flip on is in its WAL after the slot's consistent point, so reverse CDC carries it back.
  const reverse = await ensureReverseSlot(ctx.shard.pool, {
    planId: row.planId,
    shardOrdinal: ctx.shardOrdinal,
    schema: ctx.schema,
  });
  const lag =
    row.direction === "to-shard"
      ? await recentLagMs(row.planId, feedingStream(row.direction).metric)
      : await reverseLagMs(ctx.shard.pool, reverse.slot);
  // Sequences found, and set a first time, before the freeze: inside it only one quick pass remains.
  ctx.sequences = await shardedSequences(ctx.from.pool, ctx.schema.tables);
  await advanceSequences(ctx.from.pool, ctx.to.pool, ctx.sequences);
  const blocker = lagBlocker(row.direction, lag, row.budgetMs);
  if (blocker) {
    await advanceCutover(row, "precheck-failed", { error: blocker, endedAt: new Date() }, { note: blocker });
    options.log(`pre-check failed: ${blocker}`);
    throw new PrecheckFailed(blocker);
  }
}

class PrecheckFailed extends Error {}

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

async function fence(ctx: Context, options: DriveOptions): Promise<void> {
  const { row } = ctx;
  const freezeStartedAt = new Date();
  let version = 0;
  await db().$transaction(
    async (tx) => {
      const record = await writeRoutingChange(
        tx,
        {
          planId: row.planId,
          changes: [{ tenantKey: row.tenantKey, frozen: true }],
          actor: { id: null, email: "system" },
          reason: `cutover ${row.direction} of tenant ${row.tenantKey}: freeze (${row.reason})`,
        },
        options.audit,
      );
      version = record?.version ?? 0;
      await advanceCutover(row, "fenced", { freezeStartedAt }, { store: tx, note: `map version ${version}` });
    },
    { timeout: 15_000, maxWait: 10_000 },
  );
  row.freezeStartedAt = freezeStartedAt;
  // O's fence: frozen. Returns once every transaction that wrote the tenant there has ended.
  const lsn = await freezeOn(ctx, version, Math.max(50, remaining(row)));
  row.freezeLsn = formatLsn(lsn);
  await db().tenantCutover.update({ where: { id: row.id }, data: { freezeLsn: row.freezeLsn } });
  // The other databases learn of the freeze too (refusing nothing new: they did not own it).
  void syncPlanFences(ctx.fences, {
    only: ctx.fences.all.filter((d) => d !== ctx.from),
    lockTimeoutMs: 2_000,
  }).catch(() => {});
  options.log(`fenced on ${ctx.from.name} at ${row.freezeLsn}`);
}

/**
 * Brings O's fence to at least `version` (the freeze) within the budget and returns the freeze
 * position P. When the fence watch got there first, the change is already in force: a second
 * fence transaction for the tenant (same route, the version O already holds) takes the tenant's
 * lock again and writes the position message, which is all the drain needs.
 */
async function freezeOn(ctx: Context, version: number, lockTimeoutMs: number): Promise<bigint> {
  const [outcome] = await syncPlanFences(ctx.fences, { only: [ctx.from], lockTimeoutMs });
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
  });
  return result.lsn;
}

/** The origin on N that records how far the stream feeding N applied O's WAL. */
async function feedingOrigin(ctx: Context): Promise<string> {
  if (ctx.row.direction === "to-shard") return applyOriginName(ctx.slotName, ctx.slotLsn, ctx.shardOrdinal);
  const reverse = await ensureReverseSlot(ctx.shard.pool, {
    planId: ctx.row.planId,
    shardOrdinal: ctx.shardOrdinal,
    schema: ctx.schema,
  });
  return reverseOriginName(reverse.slot, reverse.slotLsn);
}

async function drainAndFlip(ctx: Context, options: DriveOptions): Promise<void> {
  const { row } = ctx;
  const freezeLsn = parseLsn(row.freezeLsn ?? "0/0");
  await advanceCutover(row, "quiesced", {}, { note: `freeze position ${row.freezeLsn}` });
  const origin = await feedingOrigin(ctx);
  const deadline = (row.freezeStartedAt?.getTime() ?? Date.now()) + row.budgetMs;
  const drained = await waitForOriginProgress(ctx.to.pool, origin, freezeLsn, deadline);
  if (!drained.reached) {
    throw new Abort(
      `The ${feedingStream(row.direction).name} had applied ${ctx.to.name} only up to ${formatLsn(drained.progress ?? 0n)} of ${row.freezeLsn} when the ${row.budgetMs} ms freeze budget ran out; the cutover was aborted and writes resumed on ${ctx.from.name}. Try again when replication lag is lower, or with a larger budget.`,
    );
  }
  const drainedAt = Date.now();
  const bumps = await advanceSequences(ctx.from.pool, ctx.to.pool, ctx.sequences);
  options.log(
    `drained ${ctx.to.name} to ${formatLsn(drained.progress ?? 0n)} ${drainedAt - (row.freezeStartedAt?.getTime() ?? 0)} ms into the freeze; sequences took ${Date.now() - drainedAt} ms`,
  );
  await options.pause("draining");
  if (remaining(row) <= 0) {
    throw new Abort(
      `The ${row.budgetMs} ms freeze budget ran out before the flip (drained, sequences set); aborted, writes resumed on ${ctx.from.name}.`,
    );
  }
  // The commit point: the map names N (still frozen) in the same transaction as 'flipped'.
  await db().$transaction(
    async (tx) => {
      const record = await writeRoutingChange(
        tx,
        {
          planId: row.planId,
          changes: [{ tenantKey: row.tenantKey, ownerId: row.toDatabaseId, frozen: true }],
          actor: { id: null, email: "system" },
          reason: `cutover ${row.direction} of tenant ${row.tenantKey}: flip to ${ctx.to.name} (${row.reason})`,
        },
        options.audit,
      );
      const flipVersion = BigInt(record?.version ?? 0);
      row.flipVersion = flipVersion;
      await advanceCutover(
        row,
        "flipped",
        { flipVersion },
        {
          store: tx,
          note: `drained to ${formatLsn(drained.progress ?? 0n)}; sequences ${bumps.length ? bumps.map((b) => `${b.sequence}≥${b.newOwner}`).join(", ") : "none"}`,
        },
      );
    },
    { timeout: 15_000, maxWait: 10_000 },
  );
  options.log(`flipped to ${ctx.to.name} (map version ${row.flipVersion})`);
}

/**
 * From the commit point on (idempotent, so a restarted worker runs it again): N's fence learns
 * the final route first, then the map unfreezes the tenant, then every fence follows.
 */
async function finish(ctx: Context, options: DriveOptions, note: string | null): Promise<void> {
  const { row } = ctx;
  const freezeEndedAt = row.freezeEndedAt ?? new Date();
  // No remote work inside the control-plane transaction: it would hold a transaction id (and the
  // map's row lock) while a shard answers, and a reverse slot's creation waits for every running
  // transaction on the server.
  await db().$transaction(
    async (tx) => {
      await writeRoutingChange(
        tx,
        {
          planId: row.planId,
          changes: [{ tenantKey: row.tenantKey, ownerId: row.toDatabaseId, frozen: false }],
          actor: { id: null, email: "system" },
          reason: `cutover ${row.direction} of tenant ${row.tenantKey}: unfreeze on ${ctx.to.name} (${row.reason})`,
        },
        options.audit,
      );
      await tx.tenantCutover.update({ where: { id: row.id }, data: { freezeEndedAt } });
    },
    { timeout: 15_000, maxWait: 10_000 },
  );
  // N first: routers that read the unfrozen map find N's fence open, at worst after one retry.
  await syncPlanFences(ctx.fences, { only: [ctx.to], lockTimeoutMs: 5_000 });
  row.freezeEndedAt = freezeEndedAt;
  // 'done' means every fence enforces the new owner, O's first of all (a write that bypasses the
  // router is refused there as not the owner from now on).
  await syncEveryFence(ctx.fences, options);
  await advanceCutover(row, "finished", { endedAt: new Date(), error: null }, { note: note ?? undefined });
  const freezeMs = row.freezeStartedAt ? freezeEndedAt.getTime() - row.freezeStartedAt.getTime() : null;
  options.log(
    `done: tenant ${row.tenantKey} on ${ctx.to.name}${freezeMs === null ? "" : `, frozen ${freezeMs} ms`}`,
  );
}

/** Brings every fence up to the map, a few tries each; one left behind is the fence watch's to finish. */
async function syncEveryFence(fences: PlanFences, options: DriveOptions): Promise<void> {
  let targets = fences.all;
  for (let attempt = 1; attempt <= 3 && targets.length > 0; attempt++) {
    const outcomes = await syncPlanFences(fences, { only: targets });
    const failed = new Set(outcomes.filter((o) => o.error).map((o) => o.database));
    for (const outcome of outcomes) {
      if (outcome.error) options.log(`fence on ${outcome.database}: ${outcome.error}`);
    }
    targets = targets.filter((t) => failed.has(t.name));
  }
}

/** Before the commit point: the old owner stays the owner, the freeze lifts. */
async function abort(row: CutoverRow, options: DriveOptions, message: string): Promise<void> {
  if (row.status === "aborted" || row.status === "done") return;
  if (row.status === "prechecking" || row.status === "requested") {
    await advanceCutover(row, "abort", { error: message, endedAt: new Date() }, { note: message });
    options.log(`aborted: ${message}`);
    return;
  }
  if (row.status !== "aborting") await advanceCutover(row, "abort", { error: message }, { note: message });
  const freezeEndedAt = row.freezeEndedAt ?? (row.freezeStartedAt ? new Date() : null);
  await db().$transaction(
    async (tx) => {
      await writeRoutingChange(
        tx,
        {
          planId: row.planId,
          changes: [{ tenantKey: row.tenantKey, ownerId: row.fromDatabaseId, frozen: false }],
          actor: { id: null, email: "system" },
          reason: `cutover ${row.direction} of tenant ${row.tenantKey} aborted: unfreeze on the old owner`,
        },
        options.audit,
      );
      await tx.tenantCutover.update({ where: { id: row.id }, data: { freezeEndedAt } });
    },
    { timeout: 15_000, maxWait: 10_000 },
  );
  row.freezeEndedAt = freezeEndedAt;
  await syncEveryFence(await loadPlanFences(row.planId), options);
  await advanceCutover(row, "aborted", { endedAt: new Date() });
  await recordEngineEvent(
    row.planId,
    "warn",
    "cutover",
    `Cutover of tenant ${row.tenantKey}: ${message}`,
  ).catch(() => {});
  options.log(`aborted: ${message}`);
}
