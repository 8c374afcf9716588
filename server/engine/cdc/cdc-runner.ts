// Runs one plan's forward CDC stream in this worker, if this worker wins the plan's lock.
//
// Protocol, per batch (numbered because the order is the correctness argument):
//   1. read a batch: every committed transaction that arrived while the last batch was applied (≤ 500)
//   2. stop, without applying or confirming, on TRUNCATE, a schema change or an unknown table
//   3. route every change to its shard(s), keeping commit order within each shard
//   4. apply each shard's statements in one shard transaction (shards in parallel)
//   5. only when every shard committed and flushed it: confirm the batch's LSN to the slot
//   6. record lag (commit on legacy → applied) and, at most once a second, the confirmed LSN
// A crash anywhere before 5 re-delivers the batch to the next runner; re-applying it is idempotent.
//
// Exclusivity: a session advisory lock on the control plane per plan, plus the server's own rule of
// one consumer per slot. A killed worker's lock and slot are released with its connections; the
// next supervisor tick anywhere takes over from the slot's confirmed position.
import pg from "pg";
import { db } from "../../db";
import { serverEnv } from "../../env";
import { currentXidReference, dropTouched, fullXid } from "../backfill/snapshot-guard";
import { loadMovementContext, recordEngineEvent } from "../runtime/movement-context";
import { guardClient } from "../sql/pools";
import { setSessionRenderingSql } from "../sql/rendering";
import { applySessionSql, applyToShard, CdcStopError, ChangeRouter, type Statement } from "./apply";
import { insertMetric, readMovementState, upsertTouched, writeConfirmedLsn } from "./cdc-bookkeeping";
import { DurableConfirmer, readShardWal } from "./durable-confirm";
import type { Tuple } from "./pgoutput";
import { pgTimestampToIso } from "./pgoutput";
import { ReplicationStream, ReplicationStreamError } from "./replication-stream";
import { currentWalLsn, formatLsn } from "./slot";

const CDC_LOCK_CLASS = 7_363_200;
const RETRYABLE = new Set(["40P01", "40001"]);
const CONFIRM_EVERY_MS = 200;

export interface CdcRunner {
  /** True once the runner ended (lost the lock, the movement stopped, or an error); the supervisor replaces it. */
  readonly finished: boolean;
  stop(): Promise<void>;
}

export function startCdcRunner(planId: string, options: { log: (m: string) => void }): CdcRunner {
  let finished = false;
  let stopping = false;
  let stream: ReplicationStream | null = null;
  const done = run()
    .catch((error) => options.log(`[cdc ${planId.slice(0, 8)}] ${(error as Error).message}`))
    .finally(() => {
      finished = true;
    });

  async function markFailed(message: string) {
    await db().dataMovement.update({ where: { planId }, data: { status: "failed", lastError: message } });
    await recordEngineEvent(planId, "error", "cdc", message);
  }

  async function run() {
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
      await stream_(lock);
    } finally {
      await lock.end().catch(() => {});
    }
  }

  /** `store`: this runner's control-plane connection (it holds the lock), for bookkeeping. */
  async function stream_(store: pg.Client) {
    const ctx = await loadMovementContext(planId);
    const router = new ChangeRouter(ctx.schema, ctx.placement);
    try {
      stream = await ReplicationStream.start({
        connectionString: ctx.sourceUrl,
        slot: ctx.slotName,
        publications: [ctx.publicationName],
        applicationName: "shardshift-cdc",
      });
    } catch (error) {
      if (
        error instanceof ReplicationStreamError &&
        (error.reason === "slot-missing" || error.reason === "slot-unusable")
      ) {
        await markFailed(`${error.message} Cancel the data movement and start it again.`);
        return;
      }
      throw error;
    }
    // Own connections, pipelined: a batch's statements go to a shard in one round trip (apply.ts).
    const shardClients = await Promise.all(
      ctx.shardUrls.map(async (url) => {
        const client = new pg.Client({
          connectionString: url,
          pipeline: true,
          application_name: "shardshift-cdc",
        });
        client.on("error", () => {});
        await client.connect();
        await client.query(applySessionSql());
        return client;
      }),
    );
    // Partial updates of rows the backfill has not copied yet are completed from legacy (apply.ts).
    const legacy = await ctx.source.connect();
    guardClient(legacy);
    const readLegacy = async (select: Statement): Promise<Tuple | null> =>
      ((await legacy.query<Tuple>(select)).rows[0] as Tuple | undefined) ?? null;
    // pgoutput names transactions by 32-bit xid; the guard compares 64-bit ones (snapshot-guard.ts).
    let xidReference = 0n;
    // Tables whose backfill is done need no guard. Unknown means not done: guarding too much is safe.
    const doneTables = new Set<string>();
    const droppedGuards = new Set<string>();
    const guarded = (relation: string) => !doneTables.has(relation);
    let movementActive = true;
    const refreshState = async () => {
      const state = await readMovementState(store, planId);
      movementActive = state.active;
      for (const table of state.doneTables) doneTables.add(table);
    };
    let lastStatusCheck = 0;
    let lastLagSample = 0;
    let lastBytesSample = 0;
    let lastConfirmWrite = 0;
    let lastTouchedFlush = 0;
    let lastXidReference = Date.now();
    let confirmed = 0n;
    let chain: Promise<unknown> = Promise.resolve();
    let pending = 0;
    const housekeeping = (task: () => Promise<unknown>) => {
      // Bounded: if the control plane is slow, drop samples rather than queue them without end.
      if (pending > 20) return;
      pending++;
      chain = chain
        .then(task)
        .catch((error) => options.log(`[cdc ${planId.slice(0, 8)}] bookkeeping: ${(error as Error).message}`))
        .finally(() => {
          pending--;
        });
    };
    const confirmer = new DurableConfirmer(
      (ordinal, flush) => readShardWal(ctx.shards[ordinal] as pg.Pool, flush),
      (lsn) => {
        stream?.confirm(lsn);
        confirmed = lsn;
      },
    );
    // Async commits are flushed by the shard's WAL writer within wal_writer_delay (200 ms by default).
    const confirmTimer = setInterval(() => {
      confirmer
        .check()
        .catch((error) => options.log(`[cdc ${planId.slice(0, 8)}] confirm: ${(error as Error).message}`));
    }, CONFIRM_EVERY_MS);
    try {
      await legacy.query(setSessionRenderingSql());
      xidReference = await currentXidReference(legacy);
      await refreshState();
      while (!stopping) {
        const now = Date.now();
        if (!movementActive) return;
        if (now - lastStatusCheck >= 1_000) {
          lastStatusCheck = now;
          housekeeping(refreshState);
        }
        if (now - lastXidReference >= 60_000) {
          lastXidReference = now;
          housekeeping(async () => {
            xidReference = await currentXidReference(ctx.source);
          });
        }
        // A finished table's guard entries are no longer read by anyone: drop them, between batches.
        for (const table of doneTables) {
          if (droppedGuards.has(table)) continue;
          droppedGuards.add(table);
          await Promise.all(shardClients.map((c) => dropTouched(c, table)));
        }
        // 1.
        const batch = await stream.readBatch({ maxTransactions: 500, maxWaitMs: 0 });
        if (!batch) return;
        // 2.
        for (const tx of batch.transactions) {
          const changed = tx.relationChanges[0];
          if (changed) {
            throw new CdcStopError(
              `The schema of ${changed.current.schema}.${changed.current.table} changed on legacy during the migration ` +
                "(ALTER TABLE). The change was not applied to the shards. Apply the same change to every shard, then cancel and restart the data movement.",
            );
          }
        }
        // 3.
        const reference = xidReference;
        const perShard = router.route(
          batch.transactions.map((tx) => ({
            xid: fullXid(tx.xid, reference).toString(),
            changes: tx.changes,
          })),
        );
        // 4.
        let written: number[] = [];
        for (let attempt = 1; ; attempt++) {
          try {
            // Every shard settles before a retry: none may still be inside this batch's transaction.
            const settled = await Promise.allSettled(
              perShard.map((statements, i) =>
                applyToShard(shardClients[i] as pg.Client, statements, {
                  guarded,
                  readLegacy,
                  sessionPrepared: true,
                }),
              ),
            );
            const failure = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
            if (failure) throw failure.reason;
            written = settled.flatMap((r, i) => (r.status === "fulfilled" && r.value ? [i] : []));
            break;
          } catch (error) {
            const code = (error as { code?: string }).code;
            if (attempt < 5 && code && RETRYABLE.has(code)) continue;
            throw error;
          }
        }
        // 5. (confirmed by the timer once durable on every shard)
        confirmer.applied(batch.confirmableLsn, written);
        // 6.
        const last = batch.transactions.at(-1);
        const t = Date.now();
        // Bookkeeping goes to the control plane off the apply path (one background chain, in order).
        if (t - lastLagSample >= 1_000) {
          lastLagSample = t;
          const lagMs = last ? Math.max(0, t - new Date(pgTimestampToIso(last.commitTime)).getTime()) : 0;
          housekeeping(() => insertMetric(store, planId, "cdc.lag_ms", lagMs));
        }
        if (t - lastBytesSample >= 2_000) {
          lastBytesSample = t;
          const upTo = confirmed;
          housekeeping(async () => {
            const head = await currentWalLsn(ctx.source);
            await insertMetric(store, planId, "cdc.lag_bytes", Number(head > upTo ? head - upTo : 0n));
          });
        }
        if (t - lastTouchedFlush >= 2_000) {
          lastTouchedFlush = t;
          const touched = router.drainTouched();
          if (touched.length) {
            housekeeping(() => upsertTouched(store, planId, touched));
          }
        }
        if (t - lastConfirmWrite >= 1_000 && confirmed > 0n) {
          lastConfirmWrite = t;
          const lsn = formatLsn(confirmed);
          housekeeping(() => writeConfirmedLsn(store, planId, lsn));
        }
      }
    } catch (error) {
      if (error instanceof CdcStopError) {
        await markFailed(error.message);
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
      clearInterval(confirmTimer);
      await confirmer.check().catch(() => {});
      await chain;
      await Promise.all(shardClients.map((c) => c.end().catch(() => {})));
      // Its session settings were changed (rendering): it does not go back to the pool as it is.
      legacy.release(true);
      await stream.stop().catch(() => {});
    }
  }

  return {
    get finished() {
      return finished;
    },
    async stop() {
      stopping = true;
      await stream?.stop().catch(() => {});
      await done;
    },
  };
}
