// Our side of the backfill figures, driven only through the services an operator uses: a plan over
// the bench's legacy and shards, startDataMovement / setBackfillRate / controlDataMovement, and the
// real worker (a child process the caller starts) doing the copying and the CDC.
import crypto from "node:crypto";
import { db } from "@/server/db";
import { generateSecretKey } from "@/server/security/secrets";
import { type Actor, systemActor } from "@/server/services/actor";
import { registerDatabase } from "@/server/services/databases/databases";
import {
  controlDataMovement,
  getMovementStatus,
  setBackfillRate,
  startDataMovement,
} from "@/server/services/movement/movement";
import { createPlan, transitionPlan } from "@/server/services/plans/plans";
import { migrateControlPlane } from "@/server/store/migrate";
import { planAtTwoWayCdc } from "@/server/testing/plan-fixture";
import { pollUntil, type RateSample, sleep } from "./stats";

const POLL_MS = 250;

export const benchActor: Actor = systemActor("bench", "bench@shardshift.local");

/** Points the services at the bench's control plane (they read process.env lazily) and migrates it. */
export async function attachBenchControlPlane(controlUrl: string): Promise<void> {
  process.env.DATABASE_URL = controlUrl;
  process.env.SHARDSHIFT_SECRET_KEY = generateSecretKey();
  process.env.BETTER_AUTH_SECRET = crypto.randomBytes(32).toString("hex");
  process.env.BETTER_AUTH_URL ??= "http://localhost:3999";
  await migrateControlPlane(controlUrl);
}

/** Registers legacy and the shards and walks a plan to "Two-way CDC", where movement can start. */
export async function createBenchPlan(legacyUrl: string, shardUrls: readonly string[]): Promise<string> {
  const plan = await planAtTwoWayCdc(benchActor, "bench", legacyUrl, [...shardUrls]);
  if (plan.phase !== "two_way_cdc") {
    throw new Error(`The bench plan reached phase ${plan.phase}, not two_way_cdc; movement cannot start.`);
  }
  return plan.id;
}

/** A second plan over databases of its own, its registrations named after it (names are unique). */
export async function createOtherBenchPlan(
  name: string,
  legacyUrl: string,
  shardUrls: readonly string[],
): Promise<string> {
  const source = await registerDatabase(benchActor, {
    name: `${name}-legacy`,
    kind: "legacy",
    url: legacyUrl,
  });
  const shardIds: string[] = [];
  for (const [i, url] of shardUrls.entries()) {
    shardIds.push(
      (await registerDatabase(benchActor, { name: `${name}-shard-${i}`, kind: "shard", url })).id,
    );
  }
  let plan = await createPlan(benchActor, {
    name,
    sourceDatabaseId: source.id,
    shardDatabaseIds: shardIds,
    shardKeyColumn: "tenant_id",
  });
  for (const reason of ["bench: key analysed", "bench: router deployed"]) {
    plan = await transitionPlan(benchActor, {
      planId: plan.id,
      expectedVersion: plan.version,
      event: "advance",
      reason,
    });
  }
  return plan.id;
}

/** Starts a movement at `rowsPerSecond` and returns once its first rows were copied. */
export async function startThrottledBackfill(
  planId: string,
  rowsPerSecond: number,
  /** Empty the shards first: the plan's movement ran (and was cancelled) before. */
  resetShards = false,
): Promise<void> {
  await setBackfillRate(benchActor, { planId, rowsPerSecond, reason: "bench: background backfill" });
  await startDataMovement(benchActor, { planId, reason: "bench: background backfill", resetShards });
  await pollUntil(
    "the background backfill to copy its first rows",
    async () => (await totals(planId)).totals.rowsCopied > 0,
    {
      timeoutMs: 60_000,
      intervalMs: POLL_MS,
    },
  );
}

/** Rows copied so far and whether every table is done. */
export async function backfillProgress(planId: string): Promise<{ rows: number; done: boolean }> {
  const status = await totals(planId);
  return {
    rows: status.totals.rowsCopied,
    done: status.totals.tables > 0 && status.totals.tablesDone === status.totals.tables,
  };
}

async function totals(planId: string) {
  const status = await getMovementStatus(planId, 1);
  if (status.movement?.status === "failed") {
    throw new Error(`The data movement failed: ${status.movement.lastError ?? "no reason recorded"}`);
  }
  return status;
}

export interface BackfillRun {
  /** Rows the backfill reports copied (sum over tasks). */
  rows: number;
  /** From the startDataMovement call until every task is done. */
  ms: number;
  /** How long the startDataMovement call itself took (introspect, prepare shards, slot). */
  startCallMs: number;
  /** From the startDataMovement call until the first rows were reported copied. */
  firstRowsMs: number | null;
  /** When each table's task was first seen done, in ms after the start. */
  tables: { table: string; rows: number; doneAtMs: number }[];
}

/** Starts a movement and waits until the backfill of every table is done. */
export async function runBackfillToCompletion(
  planId: string,
  rowsPerSecond: number,
  timeoutMs: number,
): Promise<BackfillRun> {
  await setBackfillRate(benchActor, { planId, rowsPerSecond, reason: "bench: unthrottled" });
  const started = performance.now();
  await startDataMovement(benchActor, { planId, reason: "bench: unthrottled backfill" });
  const startCallMs = performance.now() - started;
  let firstRowsMs: number | null = null;
  const doneAt = new Map<string, { rows: number; doneAtMs: number }>();
  for (;;) {
    const status = await totals(planId);
    const at = performance.now() - started;
    if (firstRowsMs === null && status.totals.rowsCopied > 0) firstRowsMs = at;
    for (const t of status.tasks) {
      if (t.status === "done" && !doneAt.has(t.table))
        doneAt.set(t.table, { rows: t.rowsCopied, doneAtMs: at });
    }
    if (status.totals.tables > 0 && status.totals.tablesDone === status.totals.tables) {
      return {
        rows: status.totals.rowsCopied,
        ms: at,
        startCallMs,
        firstRowsMs,
        tables: [...doneAt].map(([table, d]) => ({ table, ...d })).sort((a, b) => a.doneAtMs - b.doneAtMs),
      };
    }
    if (at > timeoutMs) {
      throw new Error(
        `The backfill did not finish within ${Math.round(timeoutMs / 1000)} s ` +
          `(${status.totals.tablesDone}/${status.totals.tables} tables, ${status.totals.rowsCopied} rows).`,
      );
    }
    await sleep(POLL_MS);
  }
}

export interface ThrottledRun {
  samples: RateSample[];
  /** True if every table finished before the end of the sampling. */
  finishedEarly: boolean;
}

/** Starts a movement again (shards emptied) at a fixed rate; samples rows copied every 250 ms for `seconds`. */
export async function sampleThrottledBackfill(
  planId: string,
  rowsPerSecond: number,
  seconds: number,
  onSample?: (atMs: number, tasks: { table: string; status: string; rowsCopied: number }[]) => void,
): Promise<ThrottledRun> {
  await setBackfillRate(benchActor, { planId, rowsPerSecond, reason: "bench: throttled" });
  const started = performance.now();
  // The shards hold the first movement's copy: the service empties them first when asked to.
  await startDataMovement(benchActor, { planId, reason: "bench: throttled backfill", resetShards: true });
  const samples: RateSample[] = [];
  for (;;) {
    const status = await totals(planId);
    const atMs = performance.now() - started;
    samples.push({ atMs, rows: status.totals.rowsCopied });
    onSample?.(atMs, status.tasks);
    if (status.totals.tables > 0 && status.totals.tablesDone === status.totals.tables) {
      return { samples, finishedEarly: true };
    }
    if (atMs >= seconds * 1000) return { samples, finishedEarly: false };
    await sleep(POLL_MS - ((performance.now() - started) % POLL_MS));
  }
}

/** Cancels the movement and waits until a worker dropped its slot and publication. */
export async function cancelMovement(planId: string, reason: string): Promise<void> {
  await controlDataMovement(benchActor, { planId, action: "cancel", reason });
  await pollUntil(
    "the data movement to be cancelled (slot and publication dropped)",
    async () => (await db().dataMovement.findUnique({ where: { planId } }))?.status === "cancelled",
    { timeoutMs: 60_000, intervalMs: 200 },
  );
}

export async function movementNames(planId: string): Promise<{ slotName: string; publicationName: string }> {
  const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId } });
  return { slotName: movement.slotName, publicationName: movement.publicationName };
}
