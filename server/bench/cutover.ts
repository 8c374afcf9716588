// Issue 12's cutover figures, driven only the way an operator and an application would: an SDK
// write workload (the router following the routing map over HTTP, as an application does), cutovers
// asked for with requestCutover and run by the real worker (its bounded concurrency, 8 attempts at
// a time), and what the attempts themselves recorded (tenant_cutover).
//
//   1. freeze window per tenant: freeze_started_at → freeze_ended_at of each attempt, p50/p99; and
//      how long the SDK calls that met a freeze took (timed around the router, which does not
//      expose its waits: a call counts when its tenant's route was frozen as it began or changed
//      while it ran);
//   2. cutovers per second: N tenants to their shards, done / (first requested → last ended), with
//      the aborted ones and their reasons grouped;
//   3. some of them back to legacy: their freeze window separately;
//   4. reverse replication lag (shard → legacy) for probe writes to tenants the shards now own, the
//      same paced test as the forward lag (probe.ts), against native logical replication shard →
//      legacy on the same servers (native-reverse.ts; run by the caller with nothing of ours running).
// Writes go to every tenant of the workload's list, half of them being moved, so that freezes meet
// writes; a sample of the ledger is read back from each key's owner at the end (nothing lost).
import type pg from "pg";
import { db } from "@/server/db";
import { reverseSlotName } from "@/server/engine/cdc/reverse-slot";
import { readSlotStatus } from "@/server/engine/cdc/slot";
import { advanceCutover, CutoverStateConflict, readCutover } from "@/server/engine/cutover/cutover-store";
import { startTsThread } from "@/server/engine/shared/ts-thread";
import { createApiToken } from "@/server/services/routing/api-tokens";
import { previewCutover, requestCutover } from "@/server/services/routing/cutover";
import { closeRoutingMapNotifier } from "@/server/services/routing/map-notifier";
import { startRoutingHttp } from "@/server/testing/routing-http";
import { benchActor } from "./movement";
import type { FromSdkThread, SdkWorkloadInput, SdkWorkloadSummary } from "./sdk-workload-thread";

export type { SdkWorkloadSummary } from "./sdk-workload-thread";

import {
  burstProbes,
  clearArrivals,
  drivePacedProbes,
  type ProbeDriveResult,
  readLagSummary,
  waitForArrivals,
  warmPool,
} from "./probe";
import { type LagSummary, pollUntil, sleep, summarizeLags } from "./stats";

/** requestCutover calls in flight at once (an operator's script asking for many tenants). */
const REQUEST_CONCURRENCY = 4;
const POLL_MS = 250;
/**
 * After the deadline: how long the attempts a worker already claimed get to end. They run to their
 * end whatever the bench does (a freeze held, an abort lifting it), so the next measurement and
 * step 6's cancel should not start under them: long enough for a slow abort (seen: 106 s).
 */
const CLAIMED_GRACE_MS = 180_000;
/** Recorded as the error of an attempt the bench withdrew before a worker claimed it. */
const WITHDRAWN = "withdrawn by the bench: its deadline passed before a worker claimed the attempt";

/**
 * The attempts still 'requested' end as aborted (the state machine's requested → aborted), so they
 * do not run on into the next steps; one a worker claims meanwhile is left to it (the guarded write
 * changes nothing). Returns how many were withdrawn.
 */
async function withdrawUnclaimed(ids: readonly string[]): Promise<number> {
  const waiting = await db().tenantCutover.findMany({
    where: { id: { in: [...ids] }, status: "requested" },
    select: { id: true },
  });
  let withdrawn = 0;
  for (const { id } of waiting) {
    const row = await readCutover(id);
    if (row?.status !== "requested") continue;
    try {
      await advanceCutover(row, "abort", { error: WITHDRAWN, endedAt: new Date() }, { note: WITHDRAWN });
      withdrawn++;
    } catch (error) {
      if (!(error instanceof CutoverStateConflict)) throw error;
    }
  }
  return withdrawn;
}

export interface CutoverBatch {
  direction: "to-shard" | "to-legacy";
  requested: number;
  done: number;
  aborted: number;
  /** Refused by requestCutover (a blocker), or not asked for (the deadline had passed). */
  refused: number;
  /** Still in flight at the deadline, or withdrawn by the bench before a worker claimed them. */
  unfinished: number;
  /** Aborts and refusals by reason (numbers in the text folded, so alike reasons group). */
  reasons: { reason: string; count: number }[];
  /** freeze_started_at → freeze_ended_at of every attempt that froze (done or aborted), in ms. */
  freeze: LagSummary;
  /** First requested → last ended, in seconds. */
  seconds: number;
  /** Done attempts per second over that window. */
  donePerSecond: number;
  /** Tenant → new owner's database id (null: legacy), for the done attempts. */
  owners: Map<string, string | null>;
  /** Each step's duration over the done attempts (their last step's `timings`, run-cutover.ts), by step. */
  breakdown: { step: string; summary: LagSummary }[];
  /** The slowest freezes of done attempts, with their own step timings (where a tail comes from). */
  slowest: { tenantKey: string; freezeMs: number; timings: Record<string, number> }[];
}

/** Steps in the order they run; the freeze figures (ms since writes stopped) last. */
const STEP_ORDER = [
  "precheck",
  "mapFreeze",
  "lockWait",
  "fenceCommit",
  "markDraining",
  "drain",
  "sequences",
  "flip",
  "unfreeze",
  "fenceNew",
  "fenceAll",
  "freeze",
  "writesResume",
  "mapFrozen",
];

/** Per step, p50/p99 of what the done attempts recorded. */
function stepBreakdown(rows: readonly { steps: unknown }[]): { step: string; summary: LagSummary }[] {
  const byStep = new Map<string, number[]>();
  for (const row of rows) {
    const timings = timingsOf(row);
    if (!timings) continue;
    for (const [step, ms] of Object.entries(timings)) byStep.set(step, [...(byStep.get(step) ?? []), ms]);
  }
  const rank = (step: string) => (STEP_ORDER.includes(step) ? STEP_ORDER.indexOf(step) : STEP_ORDER.length);
  return [...byStep]
    .sort(([a], [b]) => rank(a) - rank(b))
    .map(([step, values]) => ({ step, summary: summarizeLags(values) }));
}

function timingsOf(row: { steps: unknown }): Record<string, number> | undefined {
  const steps = Array.isArray(row.steps) ? (row.steps as { timings?: Record<string, number> }[]) : [];
  return [...steps].reverse().find((s) => s.timings)?.timings;
}

function slowestFreezes(
  rows: readonly {
    tenantKey: string;
    steps: unknown;
    freezeStartedAt: Date | null;
    freezeEndedAt: Date | null;
  }[],
  count: number,
): CutoverBatch["slowest"] {
  return rows
    .flatMap((r) =>
      r.freezeStartedAt && r.freezeEndedAt
        ? [
            {
              tenantKey: r.tenantKey,
              freezeMs: r.freezeEndedAt.getTime() - r.freezeStartedAt.getTime(),
              timings: timingsOf(r) ?? {},
            },
          ]
        : [],
    )
    .sort((a, b) => b.freezeMs - a.freezeMs)
    .slice(0, count);
}

/** The slowest freezes, one line each: the tenant, its freeze and its steps (ms). */
export function describeSlowest(batch: CutoverBatch): string[] {
  const order = (step: string) => (STEP_ORDER.includes(step) ? STEP_ORDER.indexOf(step) : STEP_ORDER.length);
  return batch.slowest.map(
    (s) =>
      `${s.tenantKey}: freeze ${s.freezeMs} ms — ${Object.entries(s.timings)
        .sort(([a], [b]) => order(a) - order(b))
        .map(([step, ms]) => `${step} ${Math.round(ms)}`)
        .join(", ")}`,
  );
}

/** One line: each step's p50/p99 in ms. */
export function describeBreakdown(batch: CutoverBatch): string {
  return batch.breakdown
    .map(({ step, summary }) => `${step} ${summary.p50.toFixed(0)}/${summary.p99.toFixed(0)}`)
    .join(", ");
}

export interface CutoverWorkload {
  /** Writes acknowledged so far. */
  acknowledged(): number;
  /** Retries and unexpected errors so far, in one line (why writes do not come). */
  describe(): string;
  stop(): Promise<SdkWorkloadSummary>;
}

/** The plan's databases by the names the routing map uses, with their URLs. */
export async function planDatabaseUrls(
  planId: string,
  urls: { legacy: string; shards: readonly string[] },
): Promise<{ names: Record<string, string>; shardIds: string[] }> {
  const plan = await db().plan.findUniqueOrThrow({
    where: { id: planId },
    select: {
      sourceDatabase: { select: { name: true } },
      shards: { orderBy: { ordinal: "asc" }, select: { database: { select: { id: true, name: true } } } },
    },
  });
  const names: Record<string, string> = { [plan.sourceDatabase.name]: urls.legacy };
  for (const [i, s] of plan.shards.entries()) names[s.database.name] = urls.shards[i] as string;
  return { names, shardIds: plan.shards.map((s) => s.database.id) };
}

/**
 * Starts the SDK write workload in a thread of its own (sdk-workload-thread.ts says why): a router
 * following the map over HTTP long-poll from this process's routing server, the ledger workload's
 * lanes on it.
 */
export async function startCutoverWorkload(options: {
  planId: string;
  databases: Record<string, string>;
  tenants: string[];
  writesPerSecond: number;
}): Promise<CutoverWorkload> {
  const { token } = await createApiToken(benchActor, { planId: options.planId, name: "bench: SDK workload" });
  const http = await startRoutingHttp();
  const input: SdkWorkloadInput = {
    databases: options.databases,
    mapUrl: http.url,
    token,
    tenants: options.tenants,
    writesPerSecond: options.writesPerSecond,
  };
  const thread = startTsThread(new URL("./sdk-workload-thread.ts", import.meta.url), {
    name: "shardshift-bench-sdk",
    workerData: input,
  });
  let progress = { acknowledged: 0, describe: "nothing acknowledged yet" };
  let failure: string | null = null;
  const summary = new Promise<SdkWorkloadSummary>((resolve, reject) => {
    thread.on("message", (message: FromSdkThread) => {
      if (message.kind === "progress") progress = message;
      else if (message.kind === "summary") resolve(message.summary);
      else if (message.kind === "failed") {
        failure = message.message;
        reject(new Error(`The bench's SDK workload failed: ${message.message}`));
      }
    });
    thread.on("error", (error) => reject(error));
    thread.on("exit", (code) => reject(new Error(`The bench's SDK workload thread exited (${code})`)));
  });
  summary.catch(() => {});
  const close = async () => {
    await thread.terminate().catch(() => {});
    await http.close();
    await closeRoutingMapNotifier();
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const onMessage = (message: FromSdkThread) => {
        if (message.kind === "ready") resolve();
      };
      thread.on("message", onMessage);
      summary.catch(reject);
    });
  } catch (error) {
    await close();
    throw error;
  }
  return {
    acknowledged: () => progress.acknowledged,
    describe: () => (failure ? `failed: ${failure}` : progress.describe),
    async stop() {
      thread.postMessage({ kind: "stop" });
      try {
        return await summary;
      } finally {
        await close();
      }
    },
  };
}

/** Waits until a cutover of `tenantKey` would not be stopped by anything (the feeding stream reports a small lag). */
export async function waitForCutoverReady(planId: string, tenantKey: string, what: string): Promise<void> {
  let last: string[] = [];
  try {
    await pollUntil(
      what,
      async () => {
        const preview = await previewCutover({ planId, tenantKey });
        last = preview.blockers;
        return preview.blockers.length === 0;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
  } catch (error) {
    throw new Error(`${(error as Error).message} Still in the way: ${last.join(" ")}`);
  }
}

function foldReason(text: string): string {
  return text
    .replace(/\s+/g, " ")
    .trim()
    .replace(/\b[0-9a-f]{8}-[0-9a-f-]{27,}\b/gi, "<id>")
    .replace(/[0-9A-F]+\/[0-9A-F]+/g, "<lsn>")
    .replace(/\d+/g, "N")
    .slice(0, 200);
}

/**
 * Asks for a cutover of each tenant (REQUEST_CONCURRENCY requests at a time), then waits until
 * every attempt ended. The window is the attempts' own record: first created_at → last ended_at.
 */
export async function runCutoverBatch(
  planId: string,
  tenants: readonly string[],
  direction: "to-shard" | "to-legacy",
  log: (line: string) => void,
  timeoutMs: number,
): Promise<CutoverBatch> {
  const ids: string[] = [];
  const refusals: string[] = [];
  const deadline = performance.now() + timeoutMs;
  let notRequested = 0;
  let next = 0;
  const requester = async () => {
    for (let i = next++; i < tenants.length; i = next++) {
      if (performance.now() > deadline) {
        notRequested++;
        continue;
      }
      const tenantKey = tenants[i] as string;
      try {
        const { cutoverId } = await requestCutover(benchActor, {
          planId,
          tenantKey,
          direction,
          reason: `bench: ${direction}`,
        });
        ids.push(cutoverId);
      } catch (error) {
        refusals.push(`refused: ${(error as Error).message}`);
      }
    }
  };
  const requestStarted = performance.now();
  await Promise.all(Array.from({ length: REQUEST_CONCURRENCY }, requester));
  log(
    `    ${direction}: ${ids.length} requested in ${((performance.now() - requestStarted) / 1000).toFixed(1)} s` +
      `${refusals.length ? `, ${refusals.length} refused` : ""}${notRequested ? `, ${notRequested} not requested (deadline)` : ""}`,
  );
  if (notRequested)
    refusals.push(...Array(notRequested).fill("not requested: the bench's deadline had passed"));
  let withdrew = false;
  const ended = ["done", "aborted"];
  let nextLog = performance.now() + 10_000;
  for (;;) {
    const counts = await db().tenantCutover.groupBy({
      by: ["status"],
      where: { id: { in: ids } },
      _count: { _all: true },
    });
    const finished = counts.filter((c) => ended.includes(c.status)).reduce((n, c) => n + c._count._all, 0);
    if (finished === ids.length) break;
    const now = performance.now();
    if (now > deadline && !withdrew) {
      withdrew = true;
      const withdrawn = await withdrawUnclaimed(ids);
      log(
        `    ${direction}: deadline (${timeoutMs / 1000} s) passed with ${ids.length - finished} attempts in flight; ${withdrawn} not yet claimed were withdrawn`,
      );
    }
    if (now > deadline + CLAIMED_GRACE_MS) {
      log(`    ${direction}: ${ids.length - finished} attempts still in flight; measuring without them`);
      break;
    }
    if (now > nextLog) {
      nextLog += 10_000;
      log(
        `    ${direction}: ${counts
          .map((c) => `${c._count._all} ${c.status}`)
          .sort()
          .join(", ")}`,
      );
    }
    await sleep(POLL_MS);
  }
  const rows = await db().tenantCutover.findMany({
    where: { id: { in: ids } },
    select: {
      tenantKey: true,
      status: true,
      error: true,
      toDatabaseId: true,
      createdAt: true,
      endedAt: true,
      freezeStartedAt: true,
      freezeEndedAt: true,
      steps: true,
    },
  });
  const endedRows = rows.filter((r) => ended.includes(r.status) && r.endedAt);
  const done = rows.filter((r) => r.status === "done");
  const withdrawn = rows.filter((r) => r.status === "aborted" && r.error === WITHDRAWN);
  const aborted = rows.filter((r) => r.status === "aborted" && r.error !== WITHDRAWN);
  const unfinished = rows.length - endedRows.length + withdrawn.length;
  const reasonCounts = new Map<string, number>();
  for (const text of [
    ...rows.flatMap((r) => (r.status === "aborted" ? [r.error ?? "no reason recorded"] : [])),
    ...refusals,
  ]) {
    const reason = foldReason(text);
    reasonCounts.set(reason, (reasonCounts.get(reason) ?? 0) + 1);
  }
  const first = Math.min(...rows.map((r) => r.createdAt.getTime()));
  // The attempts that ran: a withdrawal's time says nothing about the worker's pace.
  const ran = endedRows.filter((r) => r.error !== WITHDRAWN);
  const last = Math.max(...ran.map((r) => (r.endedAt as Date).getTime()));
  const seconds = ran.length ? (last - first) / 1000 : Number.NaN;
  const freeze = summarizeLags(
    rows.flatMap((r) =>
      r.freezeStartedAt && r.freezeEndedAt ? [r.freezeEndedAt.getTime() - r.freezeStartedAt.getTime()] : [],
    ),
  );
  return {
    direction,
    requested: tenants.length,
    done: done.length,
    aborted: aborted.length,
    refused: refusals.length,
    unfinished,
    reasons: [...reasonCounts]
      .map(([reason, count]) => ({ reason, count }))
      .sort((a, b) => b.count - a.count),
    freeze,
    seconds,
    donePerSecond: done.length / seconds,
    owners: new Map(done.map((r) => [r.tenantKey, r.toDatabaseId])),
    breakdown: stepBreakdown(done),
    slowest: slowestFreezes(done, 5),
  };
}

export function describeBatch(batch: CutoverBatch): string {
  const f = batch.freeze;
  return (
    `${batch.direction}: ${batch.done} of ${batch.requested} done, ${batch.aborted} aborted` +
    `${batch.refused ? `, ${batch.refused} refused` : ""}${batch.unfinished ? `, ${batch.unfinished} unfinished` : ""}` +
    ` in ${batch.seconds.toFixed(1)} s = ${batch.donePerSecond.toFixed(2)} cutovers/s; freeze p50 ${f.p50.toFixed(0)} ms, p99 ${f.p99.toFixed(0)} ms, max ${f.max.toFixed(0)} ms`
  );
}

/** Waits until each shard's reverse stream reads its slot (so the lag test measures streaming, not start-up). */
export async function waitForReverseStreams(
  planId: string,
  shards: readonly { pool: pg.Pool; ordinal: number }[],
): Promise<void> {
  await pollUntil(
    "the reverse streams (shard → legacy) to be attached to their slots",
    async () => {
      const active = await Promise.all(
        shards.map(async (s) => (await readSlotStatus(s.pool, reverseSlotName(planId, s.ordinal)))?.active),
      );
      return active.every(Boolean);
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
}

export interface ReverseLagMeasurement {
  lag: LagSummary;
  paced: ProbeDriveResult;
  /** When the paced writes ran (the CDC stage trace is read for it). */
  window: { from: Date; to: Date };
}

/**
 * The paced lag test the other way: evenly spaced single-row inserts on each source (its share of
 * `rate`, into tenants that source owns), lag as legacy saw each commit. `prepare` runs last before
 * the writes (settle, checkpoint).
 */
export async function measureReverseLag(
  what: string,
  sources: readonly { pool: pg.Pool; tenantIds: readonly string[] }[],
  target: pg.Pool,
  options: { rate: number; seconds: number; poolSize: number },
  prepare: () => Promise<void>,
  log: (line: string) => void,
): Promise<ReverseLagMeasurement> {
  const used = sources.filter((s) => s.tenantIds.length > 0);
  if (used.length === 0) throw new Error(`${what}: no shard owns a tenant to write probes for.`);
  await Promise.all(used.map((s) => warmPool(s.pool, options.poolSize)));
  // A few probes first: the first rows through a fresh apply path pay for parsing and planning.
  for (const s of used)
    await burstProbes(s.pool, { rows: 10, batch: 1, connections: 2, tenantIds: s.tenantIds });
  await waitForArrivals([target], 10 * used.length, `${what} (warm-up)`);
  await clearArrivals([target]);
  await prepare();
  log(`    ${what}: ${options.rate} writes/s over ${used.length} shard(s) for ${options.seconds} s`);
  const from = new Date();
  const drives = await Promise.all(
    used.map((s) =>
      drivePacedProbes(s.pool, {
        rate: options.rate / used.length,
        seconds: options.seconds,
        tenantIds: s.tenantIds,
      }),
    ),
  );
  const inserted = drives.reduce((n, d) => n + d.inserted, 0);
  const seconds = Math.max(...drives.map((d) => d.seconds));
  const window = { from, to: new Date() };
  await waitForArrivals([target], inserted, what);
  const lag = await readLagSummary([target]);
  await clearArrivals([target]);
  const paced: ProbeDriveResult = { inserted, errors: 0, seconds, writesPerSecond: inserted / seconds };
  log(
    `    ${what}: ${inserted} rows at ${paced.writesPerSecond.toFixed(0)} writes/s; lag p50 ${lag.p50.toFixed(1)} ms, p99 ${lag.p99.toFixed(1)} ms, max ${lag.max.toFixed(1)} ms`,
  );
  return { lag, paced, window };
}

/** Waits for a second's worth of acknowledged writes (the workload is steady when it is measured). */
export async function waitForWrites(workload: CutoverWorkload, writesPerSecond: number): Promise<void> {
  try {
    await pollUntil(
      "the SDK workload's first second of writes",
      async () => workload.acknowledged() >= writesPerSecond,
      {
        timeoutMs: 60_000,
      },
    );
  } catch (error) {
    throw new Error(`${(error as Error).message} The workload so far: ${workload.describe()}.`);
  }
}
