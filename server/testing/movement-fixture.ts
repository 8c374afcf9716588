// A running data movement on databases of the test's own: registered under unique names, the plan
// advanced to "Two-way CDC", the movement started; and the waits CDC tests share.
import type pg from "pg";
import { db } from "../db";
import { parseLsn, readSlotStatus } from "../engine/cdc/slot";
import { withClient } from "../engine/sql/connect";
import type { Actor } from "../services/actor";
import { registerDatabase } from "../services/databases/databases";
import { readServerIdentity } from "../services/databases/server-identity";
import { startDataMovement } from "../services/movement/movement";
import { createPlan, transitionPlan } from "../services/plans/plans";
import { waitFor } from "./worker-process";

export async function startMovementOn(
  actor: Actor,
  name: string,
  legacyUrl: string,
  shardUrls: string[],
): Promise<{ planId: string; slotName: string }> {
  const source = await registered(actor, { name: `${name}-legacy`, kind: "legacy", url: legacyUrl });
  const shardIds: string[] = [];
  for (const [i, url] of shardUrls.entries()) {
    shardIds.push((await registered(actor, { name: `${name}-shard-${i}`, kind: "shard", url })).id);
  }
  let plan = await createPlan(actor, {
    name,
    sourceDatabaseId: source.id,
    shardDatabaseIds: shardIds,
    shardKeyColumn: "tenant_id",
  });
  for (const reason of ["key analysed", "router deployed"]) {
    plan = await transitionPlan(actor, {
      planId: plan.id,
      expectedVersion: plan.version,
      event: "advance",
      reason,
    });
  }
  await startDataMovement(actor, { planId: plan.id, reason: "test", resetShards: true });
  const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } });
  return { planId: plan.id, slotName: movement.slotName };
}

/** A database's registration: an earlier test's when one exists (one database, one registration). */
async function registered(
  actor: Actor,
  input: { name: string; kind: "legacy" | "shard"; url: string },
): Promise<{ id: string }> {
  // A loaded test server can take a few seconds to accept a connection (the default waits 5 s).
  const identity = await withClient(input.url, (c) => readServerIdentity(c), { timeoutMs: 15_000 });
  const existing = await db().database.findFirst({
    where: { systemIdentifier: identity.systemIdentifier, databaseOid: identity.databaseOid },
    select: { id: true },
  });
  return existing ?? registerDatabase(actor, input);
}

/** Every table's backfill done. */
export async function waitForBackfill(planId: string, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    "every table copied",
    async () => {
      const tasks = await db().backfillTask.findMany({ where: { planId } });
      return tasks.length > 0 && tasks.every((t) => t.status === "done");
    },
    timeoutMs,
  );
}

/**
 * The slot confirmed everything legacy had written when this was called. The insert position, not
 * the write position: with asynchronous commit on legacy (the test server's default) a commit that
 * returned may not be written yet.
 */
export async function waitForCatchUp(legacy: pg.Pool, slotName: string, timeoutMs = 60_000): Promise<void> {
  const { rows } = await legacy.query<{ lsn: string }>("select pg_current_wal_insert_lsn()::text as lsn");
  const head = parseLsn(rows[0]?.lsn ?? "0/0");
  await waitFor(
    "CDC to catch up with legacy",
    async () => ((await readSlotStatus(legacy, slotName))?.confirmedFlushLsn ?? 0n) >= head,
    timeoutMs,
  );
}
