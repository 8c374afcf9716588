// Forward CDC: one plan's legacy → shards replication, composed from the shared parts
// (replication-loop.ts) and run in this worker if it wins the plan's lock.
//
// The composition:
//   - stream: legacy's slot and publication; origin 'any' with our own origins left out, so what
//     reverse CDC applied to legacy is not sent back to the shards, while writes legacy receives
//     from replication of its own (another origin) still are;
//   - route: the plan's placement, minus the rows of tenants legacy's fence gave away — followed
//     through the fence's messages in the stream, dropped and recorded as stray writes
//     (ForwardOwnershipRoute); a fence message stamps every shard (the cutover's drain marker);
//   - appliers: one per shard, each under the origin of this slot → that shard;
//   - confirmer: the shards' flushed origins;
//   - hooks: the backfill's snapshot guard on tables still being copied (and TRUNCATE refused on
//     them), the movement's state read once a second (paused still streams; anything else ends),
//     and bookkeeping (lag samples, touched tenants for parity, the confirmed LSN) sent to the
//     control plane off the apply path.
// A failure that must stop the movement (CdcStopError, a lost slot) fails it through the movement
// state machine (failMovement); any other ends this runner, and the supervisor starts another.
//
// Exclusivity: a session advisory lock on the control plane per plan, plus the server's own rule of
// one consumer per slot. A killed worker's lock and slot are released with its connections; the
// next supervisor tick anywhere takes over from the slot's confirmed position.
import pg from "pg";
import { serverEnv } from "../../env";
import { LEGACY_OWNER_KEY } from "../routing/fence-sql";
import { CDC_STRAY_REASON } from "../routing/stray-writes";
import { debugTrace } from "../shared/debug-trace";
import { dropTouched } from "../shared/snapshot-guard";
import {
  insertCdcStrayWrites,
  insertMetric,
  readLegacyDatabase,
  readMovementState,
  upsertTouched,
  writeConfirmedLsn,
} from "../store/cdc-bookkeeping";
import { failMovement, loadMovementContext, recordEngineEvent } from "../store/movement-context";
import { CdcStopError } from "./apply";
import { applyOriginName, isApplyOrigin } from "./apply-origin";
import { type CdcRunner, type RunnerControl, startRunner } from "./cdc-runner";
import { ChangeRouter } from "./change-router";
import { Confirmer } from "./confirmer";
import { IdleLag } from "./idle-lag";
import { ForwardOwnershipRoute, readFenceOwnership } from "./ownership-route";
import { runReplication } from "./replication-loop";
import { ReplicationStreamError } from "./replication-stream";
import { currentWalLsn, formatLsn, parseLsn } from "./slot";
import { StreamReader } from "./stream-reader";
import { readOriginProgress, TargetApplier, TargetAppliers } from "./target-applier";

const CDC_LOCK_CLASS = 7_363_200;
/** Changes of one source transaction held at most before they are applied (a piece). */
const PIECE_CHANGES = 5_000;
/** A quiet stream still samples its lag this often (idle-lag.ts), well inside the pre-check's window. */
const IDLE_TICK_MS = 1_000;

export function startForwardCdc(planId: string, options: { log: (m: string) => void }): CdcRunner {
  const log = (m: string) => options.log(`[cdc ${planId.slice(0, 8)}] ${m}`);
  return startRunner(async (control) => {
    const lock = new pg.Client({
      connectionString: serverEnv().DATABASE_URL,
      application_name: "shardshift-cdc-lock",
    });
    lock.on("error", () => {});
    await lock.connect();
    try {
      const { rows } = await lock.query<{ ok: boolean }>(
        "select pg_try_advisory_lock($1, hashtext($2)) as ok",
        [CDC_LOCK_CLASS, planId],
      );
      if (!rows[0]?.ok) return; // another worker streams this plan
      await streamPlan(planId, lock, control, log);
    } finally {
      await lock.end().catch(() => {});
    }
  }, log);
}

/** `store`: this runner's control-plane connection (it holds the lock), for bookkeeping. */
async function streamPlan(
  planId: string,
  store: pg.Client,
  control: RunnerControl,
  log: (m: string) => void,
) {
  const ctx = await loadMovementContext(planId);
  let reader: StreamReader;
  try {
    reader = await StreamReader.open({
      url: ctx.sourceUrl,
      source: ctx.source,
      slot: ctx.slotName,
      publication: ctx.publicationName,
      schema: ctx.schema,
      origin: "any",
      skipOrigin: isApplyOrigin,
      sourceName: "legacy",
      applicationName: "shardshift-cdc",
      maxChangesPerPiece: PIECE_CHANGES,
      idleTimeoutMs: IDLE_TICK_MS,
    });
  } catch (error) {
    if (
      error instanceof ReplicationStreamError &&
      (error.reason === "slot-missing" || error.reason === "slot-unusable")
    ) {
      await failMovement(planId, "cdc", `${error.message} Cancel the data movement and start it again.`);
      return;
    }
    throw error;
  }
  control.onStop(() => reader.stop());

  // Background bookkeeping: one chain, in order; if the control plane is slow, samples are dropped
  // rather than queued without end.
  let chain: Promise<unknown> = Promise.resolve();
  let pending = 0;
  const housekeeping = (task: () => Promise<unknown>) => {
    if (pending > 20) return;
    pending++;
    chain = chain
      .then(task)
      .catch((error) => log(`bookkeeping: ${(error as Error).message}`))
      .finally(() => {
        pending--;
      });
  };

  // Ownership as legacy's fence says it now, then as the fence messages in the stream change it:
  // rows of tenants legacy gave away are dropped and recorded as stray writes (ownership-route.ts).
  // Read after the stream opened: a fence change committed before this read is in the state, one
  // committed after it is in the stream (ownership-route.ts).
  let legacyDatabase: { id: string; name: string };
  let ownership: ForwardOwnershipRoute;
  try {
    legacyDatabase = await readLegacyDatabase(store, planId);
    ownership = new ForwardOwnershipRoute(
      ctx.placement,
      await readFenceOwnership(ctx.source, planId, LEGACY_OWNER_KEY),
    );
  } catch (error) {
    await reader.close();
    throw error;
  }
  const router = new ChangeRouter(ctx.schema, ownership);
  // Tables whose backfill is done need no guard. Unknown means not done: guarding too much is safe.
  const doneTables = new Set<string>();
  const droppedGuards = new Set<string>();
  const guarded = (relation: string) => !doneTables.has(relation);
  router.truncateRefusal = (relation) =>
    guarded(relation) ? `the backfill of ${relation} is not finished (its copy would bring rows back)` : null;
  let movementActive = true;
  const refreshState = async () => {
    const state = await readMovementState(store, planId);
    movementActive = state.active;
    for (const table of state.doneTables) {
      if (!doneTables.has(table)) debugTrace(`cdc-sees-done ${table}`);
      doneTables.add(table);
    }
  };

  const targets: TargetApplier[] = [];
  const appliers = new TargetAppliers(targets);
  const slotLsn = parseLsn(ctx.slotLsn);
  let confirmer: Confirmer | null = null;
  try {
    // One apply session per shard, each carrying the origin of its slot → shard pair: its own record
    // of what it holds, so a replay skips what is already there (target-applier.ts).
    for (const [ordinal, url] of ctx.shardUrls.entries()) {
      targets.push(
        await TargetApplier.open({ url, ordinal, origin: applyOriginName(ctx.slotName, slotLsn, ordinal) }),
      );
    }
    const confirmerOf = new Confirmer({
      durableOf: (ordinal) =>
        readOriginProgress(ctx.shards[ordinal] as pg.Pool, targets[ordinal]?.origin ?? ""),
      confirm: (lsn) => reader.confirm(lsn),
      log,
    });
    confirmer = confirmerOf;
    await refreshState();

    let lastStatusCheck = Date.now();
    let lastLagSample = 0;
    let lastBytesSample = 0;
    const idleLag = new IdleLag();
    let lastConfirmWrite = 0;
    let lastTouchedFlush = 0;
    await runReplication(
      { reader, router, appliers, confirmer: confirmerOf },
      {
        keepGoing: () => !control.stopping && movementActive,
        async beforeBatch(idle) {
          const now = Date.now();
          if (now - lastStatusCheck >= 1_000) {
            lastStatusCheck = now;
            housekeeping(refreshState);
          }
          // A finished table's guard entries are no longer read by anyone: drop them, between batches.
          for (const table of doneTables) {
            if (droppedGuards.has(table)) continue;
            // On the apply sessions themselves: never inside a lane's or a large transaction.
            if (!(await idle())) break;
            droppedGuards.add(table);
            await Promise.all(targets.map((t) => dropTouched(t.connection, table)));
          }
        },
        guarded,
        // Before the batch can be confirmed: a dropped row reaches no target, so nothing would
        // replay it once the slot moved past. Rare (only writers that bypass the fence).
        async afterRoute() {
          const strays = ownership.takeStrays();
          if (strays.length === 0) return;
          await insertCdcStrayWrites(store, planId, legacyDatabase, strays, CDC_STRAY_REASON);
          log(
            `dropped rows of ${strays.length} tenant(s) written on legacy after legacy gave them away (recorded as stray writes)`,
          );
        },
        progressed: () => control.progressed(),
        applied(last) {
          const t = Date.now();
          if (t - lastLagSample >= 1_000) {
            lastLagSample = t;
            if (last) {
              const lagMs = Math.max(0, t - new Date(last.commitTimeIso).getTime());
              housekeeping(() => insertMetric(store, planId, "cdc.lag_ms", lagMs));
            } else {
              // Nothing applied (an idle tick, or the server moving past WAL with nothing for us):
              // judged from WAL positions (idle-lag.ts).
              const received = reader.receivedLsn;
              const receivedAt = performance.now();
              housekeeping(async () => {
                const lagMs = await idleLag.sample(ctx.source, received, receivedAt);
                if (lagMs !== null) await insertMetric(store, planId, "cdc.lag_ms", lagMs);
              });
            }
          }
          if (t - lastBytesSample >= 2_000) {
            lastBytesSample = t;
            const upTo = confirmerOf.confirmed;
            housekeeping(async () => {
              const head = await currentWalLsn(ctx.source);
              await insertMetric(store, planId, "cdc.lag_bytes", Number(head > upTo ? head - upTo : 0n));
            });
          }
          if (t - lastTouchedFlush >= 2_000) {
            lastTouchedFlush = t;
            const touched = router.drainTouched();
            if (touched.length) housekeeping(() => upsertTouched(store, planId, touched));
          }
          if (t - lastConfirmWrite >= 1_000 && confirmerOf.confirmed > 0n) {
            lastConfirmWrite = t;
            const lsn = formatLsn(confirmerOf.confirmed);
            housekeeping(() => writeConfirmedLsn(store, planId, lsn));
          }
        },
      },
    );
  } catch (error) {
    if (error instanceof CdcStopError) {
      await failMovement(planId, "cdc", error.message);
      return;
    }
    if (error instanceof ReplicationStreamError && error.reason === "slot-in-use") return;
    await recordEngineEvent(
      planId,
      "warn",
      "cdc",
      `The CDC stream stopped and will restart: ${(error as Error).message}`,
    );
    throw error;
  } finally {
    await confirmer?.stop();
    // Closed before the bookkeeping is awaited: that may need a connection from the same pool.
    await reader.close();
    await appliers.close();
    await chain;
  }
}
