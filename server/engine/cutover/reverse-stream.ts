// One shard's reverse stream (shard → legacy) as the supervisor runs it, in the process's reverse
// CDC thread (isolated-runner.ts): a session advisory lock on the control plane per
// (plan, shard), taken by the stream's own connection, so exactly one worker streams the shard; a
// killed worker's lock dies with it and the next tick anywhere takes the stream over from the
// slot's confirmed position. The stream follows the shard's fence (ReverseOwnershipRoute): it
// carries exactly the tenants the shard owns, changing at the fence messages' positions.
import pg from "pg";
import { type CdcRunner, startRunner } from "../cdc/cdc-runner";
import { ReverseOwnershipRoute, readFenceOwnership } from "../cdc/ownership-route";
import { startReverseCdc } from "../cdc/reverse-cdc";
import { db } from "../store/db";
import { loadMovementContext } from "../store/movement-context";
import { ensureReverseSlot } from "./cdc-links";

const REVERSE_CDC_LOCK_CLASS = 7_363_201;

export function startReverseStream(
  planId: string,
  ordinal: number,
  options: { controlPlaneUrl: string; log: (m: string) => void },
): CdcRunner {
  const log = (m: string) => options.log(`[reverse ${planId.slice(0, 8)}/${ordinal}] ${m}`);
  return startRunner(async (control) => {
    const lock = new pg.Client({
      connectionString: options.controlPlaneUrl,
      application_name: "shardshift-reverse-lock",
    });
    lock.on("error", () => {});
    await lock.connect();
    try {
      const { rows } = await lock.query<{ ok: boolean }>(
        "select pg_try_advisory_lock($1, hashtext($2)) as ok",
        [REVERSE_CDC_LOCK_CLASS, `${planId}:${ordinal}`],
      );
      if (!rows[0]?.ok) return; // another worker streams this shard
      const ctx = await loadMovementContext(planId);
      const shard = ctx.shards[ordinal];
      const shardUrl = ctx.shardUrls[ordinal];
      const row = await db().planShard.findUnique({
        where: { planId_ordinal: { planId, ordinal } },
        select: { databaseId: true, database: { select: { name: true } } },
      });
      if (!shard || !shardUrl || !row) return;
      const reverse = await ensureReverseSlot(shard, { planId, shardOrdinal: ordinal, schema: ctx.schema });
      if (control.stopping) return;
      const inner = startReverseCdc({
        shardUrl,
        shard,
        shardName: row.database.name,
        slot: reverse.slot,
        slotLsn: reverse.slotLsn,
        publication: reverse.publication,
        legacyUrl: ctx.sourceUrl,
        legacy: ctx.source,
        schema: ctx.schema,
        route: async () => new ReverseOwnershipRoute(await readFenceOwnership(shard, planId, row.databaseId)),
        log,
      });
      control.onStop(() => inner.stop());
      await inner.ended;
      if (inner.progressed) control.progressed();
      if (inner.failure) throw inner.failure;
    } finally {
      await lock.end().catch(() => {});
    }
  }, log);
}
