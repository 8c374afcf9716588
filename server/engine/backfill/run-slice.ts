// One slice of one table's backfill: chunks until the slice's time is up, the table is done, or
// the movement stops running. Slices are the unit of work on the queue; a task is resumed by the
// next slice from its checkpoint, by whichever worker takes it.
//
// Invariants:
// - One copier per task at a time: a session advisory lock on the control plane, held for the
//   slice. A killed worker's connection dies and releases it, so a successor resumes at once.
// - The checkpoint (last key, rows copied) is written after the chunk is committed on every shard:
//   a crash in between re-copies one chunk, which upserts the same rows (no duplicates).
// - The plan's rate limit is shared by the tasks copying at that moment, re-read every second, so
//   a new limit takes effect within a second; CDC lag or a busy source (active connections, or the
//   plan's load query) halves it until they recover.
// - Pause or cancel holds within about a second at any rate: a chunk is at most a quarter second of
//   work at the current rate, and a wait for the rate limit (which at a few rows/s can be seconds)
//   looks at the movement's status every STOP_CHECK_MS and stops there, before reading anything.
//   Stopping between chunks keeps every checkpoint and snapshot-guard invariant as they are.
import crypto from "node:crypto";
import pg from "pg";
import { serverEnv } from "../../env";
import { ZPlanSettings } from "../../schemas/plan";
import { debugTrace } from "../shared/debug-trace";
import { yieldToReplication } from "../shared/replication-pressure";
import { assertCopier, COPIER_TAKEN_OVER, claimCopier, dropTouched } from "../shared/snapshot-guard";
import { planTable } from "../shared/table-plan";
import { TokenBucket } from "../shared/token-bucket";
import { guardClient } from "../sql/pools";
import { TASK_LOCK_CLASS } from "../store/active-copiers";
import { db } from "../store/db";
import { loadMovementContext, recordEngineEvent, recordMetric } from "../store/movement-context";
import { type ChunkRead, chooseWriteMode, readChunk, writeChunk } from "./copy-chunk";
import { LoadQueryError, type SourceLoadLimits, sourceBusyReason } from "./source-load";
import { vacuumAnalyzeOnShards } from "./vacuum-copied";

const RETRYABLE = new Set(["40P01", "40001", "55P03"]);
const MAX_CHUNK_ROWS = 20_000;
const STOP_CHECK_MS = 250;
/** 50 × 200 ms: longer than CDC takes to catch up unless it is stuck. */
const UNIQUE_CONFLICT_RETRIES = 50;

export type SliceOutcome = "done" | "more" | "skipped";

async function sharedRate(
  planId: string,
  taskId: bigint,
): Promise<{ rate: number; lagThresholdMs: number; limits: SourceLoadLimits }> {
  const plan = await db().plan.findUniqueOrThrow({ where: { id: planId } });
  const settings = ZPlanSettings.parse(plan.settings);
  const busy = await db().backfillTask.count({
    where: {
      planId,
      status: "running",
      updatedAt: { gt: new Date(Date.now() - 5_000) },
      NOT: { id: taskId },
    },
  });
  return {
    rate: settings.backfillRowsPerSecond / (busy + 1),
    lagThresholdMs: settings.cdcLagThresholdMs,
    limits: settings,
  };
}

async function movementRunning(planId: string): Promise<boolean> {
  const movement = await db().dataMovement.findUnique({ where: { planId }, select: { status: true } });
  return movement?.status === "running";
}

/**
 * Waits until `rows` may go at the bucket's rate, checking every STOP_CHECK_MS that the movement
 * still runs; false means it does not (paused or cancelled): stop before the next chunk.
 */
async function throttle(bucket: TokenBucket, rows: number, planId: string): Promise<boolean> {
  // Replication on this worker first: no chunk starts while it runs late, and the pace drops while
  // it does (replication-pressure.ts).
  const pace = await yieldToReplication();
  let wait = bucket.reserve(Math.ceil(rows / pace));
  while (wait > 0) {
    const step = Math.min(wait, STOP_CHECK_MS);
    await new Promise((r) => setTimeout(r, step));
    wait -= step;
    if (!(await movementRunning(planId))) return false;
  }
  return true;
}

async function currentLagMs(planId: string): Promise<number | null> {
  const sample = await db().metricSample.findFirst({
    where: { planId, name: "cdc.lag_ms", at: { gt: new Date(Date.now() - 10_000) } },
    orderBy: { at: "desc" },
  });
  return sample?.value ?? null;
}

/**
 * One connection from each pool, or none: when one server refuses (a shard crashed or restarting),
 * the connections already taken go back. Holding them would leak one per failed slice, and a
 * worker whose legacy pool (6) was used up that way could copy nothing again: every later slice
 * waited 30 s for a connection and failed, and the backfill stalled after a shard crash.
 */
async function checkOutAll(pools: readonly pg.Pool[]): Promise<pg.PoolClient[]> {
  const settled = await Promise.allSettled(pools.map((p) => p.connect()));
  const clients = settled.flatMap((r) => (r.status === "fulfilled" ? [guardClient(r.value)] : []));
  const refused = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (refused) {
    for (const c of clients) c.release();
    throw refused.reason;
  }
  return clients;
}

/**
 * Runs task `taskId` for up to `sliceMs`; if it finishes early, goes on with the plan's other
 * unfinished tasks that no one is copying, so a worker does not wait on the queue between tables.
 */
export async function runBackfillSlice(taskId: bigint, sliceMs = 15_000): Promise<SliceOutcome> {
  const deadline = performance.now() + sliceMs;
  const lock = new pg.Client({
    connectionString: serverEnv().DATABASE_URL,
    application_name: "shardshift-backfill-lock",
  });
  const copied: { planId: string; table: string }[] = [];
  // Losing this connection releases the task's lock: another worker may take the task, so this
  // slice stops before its next chunk rather than copy beside it.
  let lockLost = false;
  lock.on("error", () => {
    lockLost = true;
  });
  lock.on("end", () => {
    lockLost = true;
  });
  await lock.connect();
  const tryLock = async (id: bigint) =>
    (
      await lock.query<{ ok: boolean }>("select pg_try_advisory_lock($1, $2) as ok", [
        TASK_LOCK_CLASS,
        Number(id),
      ])
    ).rows[0]?.ok === true;
  try {
    if (!(await tryLock(taskId))) return "skipped";
    const stillLocked = () => !lockLost;
    let outcome = await runLockedSlice(taskId, deadline, stillLocked, copied);
    let current = taskId;
    while (outcome === "done" && performance.now() < deadline) {
      await lock.query("select pg_advisory_unlock($1, $2)", [TASK_LOCK_CLASS, Number(current)]);
      const task = await db().backfillTask.findUnique({ where: { id: current }, select: { planId: true } });
      const others = await db().backfillTask.findMany({
        where: { planId: task?.planId, status: { in: ["pending", "running"] } },
        // Largest first, as the supervisor queues them: two lanes then end together.
        orderBy: [{ rowsTotal: "desc" }, { id: "asc" }],
        select: { id: true },
      });
      let next: bigint | null = null;
      for (const other of others) {
        if (await tryLock(other.id)) {
          next = other.id;
          break;
        }
      }
      if (next === null) break;
      current = next;
      outcome = await runLockedSlice(current, deadline, stillLocked, copied);
    }
    return outcome;
  } finally {
    await lock.end().catch(() => {});
    // After the task locks are gone: a vacuum is not copying, and must not hold up a pause. Nor a
    // lane: awaited here it held the slice's queue slot, and the plan's last small tables waited
    // about a second for a lane while the big ones were vacuumed (the bench, session 22).
    for (const { planId, table } of copied) {
      const stop = vacuumsStop.signal;
      vacuums = vacuums.then(() => vacuumCopiedTable(planId, table, stop));
    }
  }
}

/** This process's vacuums of copied tables, one at a time beside the copy (they never reject). */
let vacuums: Promise<void> = Promise.resolve();
/** Aborted by stopVacuums: what still runs is cancelled, what is queued is skipped. */
let vacuumsStop = new AbortController();

/** Resolves once every vacuum queued so far has run. */
export function settleVacuums(): Promise<void> {
  return vacuums;
}

/**
 * A worker stopping: waits up to `graceMs` for the vacuums queued so far, then cancels the one
 * running and skips the rest (each recorded as a warning; autovacuum does the work later). Without
 * a bound the stop waited as long as a vacuum waited for a lock on a shard: for ever, if its holder
 * never let go (break-vacuum-stop.test.ts). Vacuums queued after it (a slice that outlived the
 * queue's stop) are skipped too: the engine's pools they would run on are closed next.
 */
export async function stopVacuums(graceMs: number): Promise<void> {
  const stop = vacuumsStop;
  const timer = setTimeout(() => stop.abort(), graceMs);
  try {
    await vacuums;
  } finally {
    clearTimeout(timer);
    stop.abort();
  }
}

/** A worker starting in this process: its copied tables are vacuumed again (after stopVacuums). */
export function resumeVacuums(): void {
  if (vacuumsStop.signal.aborted) vacuumsStop = new AbortController();
}

/** Statistics and the visibility map now, before the shards serve traffic (vacuum-copied.ts). */
async function vacuumCopiedTable(planId: string, table: string, stop: AbortSignal): Promise<void> {
  try {
    if (stop.aborted) throw new Error("the worker stopped before it ran");
    const ctx = await loadMovementContext(planId);
    for (const failure of await vacuumAnalyzeOnShards(ctx.shards, table, stop)) {
      await recordEngineEvent(
        planId,
        "warn",
        "backfill",
        `${table} was copied, but VACUUM (ANALYZE) on shard ${failure.shard} failed: ${failure.message}. ` +
          "The copy is complete; autovacuum will do it later, or run VACUUM (ANALYZE) on that table on the shard now.",
      );
    }
  } catch (error) {
    await recordEngineEvent(
      planId,
      "warn",
      "backfill",
      `${table} was copied, but its VACUUM (ANALYZE) on the shards could not run: ${(error as Error).message}. ` +
        "The copy is complete; autovacuum will do it later, or run VACUUM (ANALYZE) on that table on the shards now.",
    ).catch(() => {});
  }
}

async function runLockedSlice(
  taskId: bigint,
  deadline: number,
  stillLocked: () => boolean,
  /** Tables this slice finished copying (vacuumed once the task's lock is released). */
  copied: { planId: string; table: string }[],
): Promise<SliceOutcome> {
  const task = await db().backfillTask.findUnique({
    where: { id: taskId },
    include: { plan: { include: { movement: true } } },
  });
  if (!task || task.status === "done" || task.status === "cancelled") return "done";
  if (task.plan.movement?.status !== "running") return "skipped";
  const ctx = await loadMovementContext(task.planId);
  const table = ctx.schema.tables.find((t) => t.qualified === task.tableName);
  if (!table)
    throw new Error(`Backfill task ${task.tableName} has no table in the movement's schema snapshot.`);
  const plan = planTable(table, ctx.schema.shardKeyColumn);

  let { rate, lagThresholdMs, limits } = await sharedRate(task.planId, taskId);
  let backoff = 1;
  const bucket = new TokenBucket(rate);
  const [source, ...shards] = await checkOutAll([ctx.source, ...ctx.shards]);
  if (!source) throw new Error("No connection to legacy was checked out.");
  let lastKey = (task.lastKey as string[] | null) ?? null;
  const started = performance.now();
  let conflicts = 0;
  let ahead: { after: string[] | null; read: Promise<ChunkRead> } | null = null;
  let lastCheck = started;
  let windowRows = 0;
  let windowStart = started;
  let failed = false;
  let stopAfterChunk = false;
  try {
    const mode = await chooseWriteMode(plan, source, shards);
    // Fence out any earlier holder of this task (see claimCopier) before the first chunk.
    const owner = crypto.randomUUID();
    await Promise.all(shards.map((s) => claimCopier(s, task.tableName, owner)));
    debugTrace(`slice-claim ${task.tableName} owner=${owner} from=${JSON.stringify(lastKey)}`);
    await db().backfillTask.update({ where: { id: taskId }, data: { status: "running" } });
    for (;;) {
      const now = performance.now();
      if (now - lastCheck >= 1_000) {
        lastCheck = now;
        const movement = await db().dataMovement.findUnique({ where: { planId: task.planId } });
        if (movement?.status !== "running") return "skipped";
        ({ rate, lagThresholdMs, limits } = await sharedRate(task.planId, taskId));
        const lag = await currentLagMs(task.planId);
        let why: string | null =
          lag !== null && lag > lagThresholdMs
            ? `CDC lag ${Math.round(lag)} ms is over ${lagThresholdMs} ms`
            : null;
        try {
          why ??= await sourceBusyReason(ctx.source, limits);
        } catch (error) {
          // A load query that fails cannot say legacy is fine: back off, and say why.
          if (!(error instanceof LoadQueryError)) throw error;
          why = `${error.message} Fix it in the plan's settings`;
        }
        const nextBackoff = why ? Math.max(0.1, backoff / 2) : Math.min(1, backoff * 1.5);
        if (why && backoff === 1) {
          await recordEngineEvent(task.planId, "warn", "backfill", `Backing off ${task.tableName}: ${why}.`);
        }
        backoff = nextBackoff;
        bucket.setRate(rate * backoff);
        if (now - windowStart >= 2_000) {
          await recordMetric(
            task.planId,
            `backfill.rows_per_s:${task.tableName}`,
            (windowRows * 1000) / (now - windowStart),
          );
          windowRows = 0;
          windowStart = now;
        }
      }
      if (now >= deadline) return "more";
      if (!stillLocked())
        throw new Error(`${task.tableName}: the task's lock connection to the control plane was lost.`);

      // A throttled copy in chunks of 1/20 s of its rate: each chunk is a burst on legacy and every
      // shard at once, and replication beside it waits out the burst (the bench's busy worker).
      const limit = Math.max(50, Math.min(MAX_CHUNK_ROWS, Math.floor(bucket.ratePerSecond / 20)));
      let chunk: Awaited<ReturnType<typeof writeChunk>>;
      try {
        const from = lastKey;
        let read: ChunkRead;
        if (ahead && ahead.after === from) {
          read = await ahead.read;
        } else {
          if (!(await throttle(bucket, limit, task.planId))) return "skipped";
          read = await readChunk(source, shards.length, ctx.placement, plan, from, limit);
        }
        ahead = null;
        // Unthrottled, the next chunk is read from legacy while this one is written to the shards.
        // (Told to stop while waiting for it: this chunk is still written, then the slice stops.)
        if (read.rows > 0 && limit === MAX_CHUNK_ROWS) {
          if (await throttle(bucket, limit, task.planId)) {
            const next = readChunk(source, shards.length, ctx.placement, plan, read.lastKey, limit);
            next.catch(() => {}); // awaited when used; a failure then is handled there
            ahead = { after: read.lastKey, read: next };
          } else {
            stopAfterChunk = true;
          }
        }
        chunk =
          read.rows === 0
            ? { rows: 0, lastKey: null, perShard: [] }
            : await writeChunk(shards, plan, read, mode, owner);
        conflicts = 0;
      } catch (error) {
        // The chunk is redone from its start: a chunk read ahead of it is dropped.
        if (ahead) await ahead.read.catch(() => {});
        ahead = null;
        const code = (error as { code?: string }).code;
        // Another slice claimed the table since this one started: it carries on, this one stops.
        if ((error as Error).message?.includes(COPIER_TAKEN_OVER)) return "skipped";
        if (code && RETRYABLE.has(code)) continue; // a deadlock or conflict with CDC apply: redo the chunk
        // A unique value the chunk's (older) row holds may still sit on another row of the shard that
        // CDC has not moved off yet: wait for CDC to catch up and redo the chunk, for a while.
        if (code === "23505" && ++conflicts <= UNIQUE_CONFLICT_RETRIES) {
          await new Promise((r) => setTimeout(r, 200));
          continue;
        }
        throw error;
      }
      if (chunk.rows === 0) {
        // Only the copier that still holds the task may call it done: CDC stops guarding a done table.
        if (!stillLocked()) return "skipped";
        const checks = await Promise.allSettled(shards.map((s) => assertCopier(s, task.tableName, owner)));
        const refused = checks.find((r): r is PromiseRejectedResult => r.status === "rejected");
        if (refused) {
          if ((refused.reason as Error).message?.includes(COPIER_TAKEN_OVER)) return "skipped";
          throw refused.reason;
        }
        await db().backfillTask.update({ where: { id: taskId }, data: { status: "done" } });
        debugTrace(`task-done ${task.tableName} owner=${owner}`);
        // CDC stops recording the table once it sees it done; these entries are no longer read.
        await Promise.all(shards.map((s) => dropTouched(s, task.tableName)));
        await recordMetric(task.planId, `backfill.rows_per_s:${task.tableName}`, 0);
        copied.push({ planId: task.planId, table: task.tableName });
        return "done";
      }
      lastKey = chunk.lastKey;
      windowRows += chunk.rows;
      await db().backfillTask.update({
        where: { id: taskId },
        data: {
          lastKey: chunk.lastKey ?? undefined,
          rowsCopied: { increment: chunk.rows },
          chunks: { increment: 1 },
        },
      });
      if (stopAfterChunk) return "skipped";
    }
  } catch (error) {
    failed = true;
    await recordEngineEvent(
      task.planId,
      "error",
      "backfill",
      `${task.tableName}: ${(error as Error).message}`,
    ).catch(() => {});
    throw error;
  } finally {
    // A chunk read ahead must finish before its connection goes back to the pool.
    if (ahead) await ahead.read.catch(() => {});
    // After an error a connection may be mid-transaction or broken: discard it rather than reuse it.
    source.release(failed);
    for (const s of shards) s.release(failed);
  }
}
