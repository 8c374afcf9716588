// The movement start protocol: engine code the movement service calls once it has authorized the
// caller, validated the plan and identified its databases. Each step is safe to repeat after a
// crash, and a start whose process dies is cleaned up by the workers (interrupted-start.ts):
//   1. introspect legacy; refuse tables the migration cannot carry          (introspectForStart)
//   2. (the service: identify the databases by what their servers report, refuse overlaps)
//   3. hold the plan's start lock, then claim the start: the movement is recorded as `preparing`,
//      so a second start is refused (start-claim.ts); a start that fails from here on undoes its claim
//   4. create the schema on every shard (idempotent), emptying it first when asked
//   5. create the publication, then the slot: its consistent point precedes every backfill read,
//      so no change can fall between the copy and the stream
//   6. preparing → running with the slot LSN, one backfill task per table, the caller's audit event
//      in the same transaction, and the workers woken
import type pg from "pg";
import { serverEnv } from "../../env";
import { AppError } from "../../errors";
import type { Prisma } from "../../generated/prisma/client";
import { introspectSource, type SourceSchema, unsupportedTables } from "../analysis/introspect";
import { prepareShard, ShardSchemaConflictError } from "../backfill/prepare-shards";
import { createPublication, createSlot, dropPublication, dropSlot, formatLsn } from "../cdc/slot";
import { TOUCHED_TABLE } from "../shared/snapshot-guard";
import { ConnectionFailedError, withClient } from "../sql/connect";
import { transitionMovement } from "../state/movement-transition";
import { db } from "../store/db";
import { databaseUrl } from "../store/movement-context";
import { checkClaimCurrent, claimStart, releaseClaim, withClaimHeld } from "../store/start-claim";
import { runExclusivePerPlan } from "./plan-lock";
import { NOTIFY_ENGINE_SQL } from "./wake";

/** A plan's slot and publication are named after it: a restart finds them without any record. */
export function replicationNames(planId: string) {
  const short = planId.replaceAll("-", "").slice(0, 16);
  return { publicationName: `shardshift_${short}`, slotName: `shardshift_${short}` };
}

/** A registered database, as the start names it in its messages and reaches it. */
export interface StartDatabase {
  id: string;
  name: string;
}

export interface StartRequest {
  planId: string;
  source: StartDatabase;
  /** In the plan's shard order. */
  shards: StartDatabase[];
  schema: SourceSchema;
  /** Empty shard tables left by an earlier movement instead of refusing. */
  resetShards: boolean;
  /** The plan's phase still allows a movement (checked again under the claim's lock). */
  isMovementPhase: (phase: string) => boolean;
}

export interface StartedMovement {
  slotName: string;
  publicationName: string;
  slotLsn: string;
  tables: number;
  sharded: number;
}

export interface StartHooks {
  /**
   * Throws unless this connection reached the database identified before the start (the service's
   * identity check): a name that points elsewhere by now must not get its tables emptied.
   */
  assertConnectedTo(
    client: pg.ClientBase,
    target: { role: "source" } | { role: "shard"; index: number },
  ): Promise<void>;
  /** Runs inside the transaction that records the movement as running: the caller's audit event. */
  recordStart(tx: Prisma.TransactionClient, started: StartedMovement): Promise<unknown>;
}

async function reachable<T>(what: string, url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  try {
    return await withClient(url, fn, { timeoutMs: 10_000 });
  } catch (error) {
    if (error instanceof ConnectionFailedError) {
      throw new AppError("BAD_REQUEST", `${what} is unreachable: ${error.message} Nothing was started.`);
    }
    if (error instanceof ShardSchemaConflictError) throw new AppError("PRECONDITION_FAILED", error.message);
    throw error;
  }
}

async function nonEmptyTables(client: pg.ClientBase, tables: { qualified: string }[]): Promise<string[]> {
  const found: string[] = [];
  for (const t of tables) {
    const exists = await client.query(`select exists (select 1 from ${t.qualified}) as e`);
    if (exists.rows[0]?.e) found.push(t.qualified.replaceAll('"', ""));
  }
  return found;
}

/** 1. Legacy's schema, refused with the fix when a table cannot be carried (reads only). */
export async function introspectForStart(
  source: StartDatabase,
  shardKeyColumn: string,
): Promise<SourceSchema> {
  const url = await databaseUrl(source.id);
  const schema = await reachable(`The legacy database "${source.name}"`, url, (c) =>
    introspectSource(c, shardKeyColumn),
  );
  const problems = unsupportedTables(schema);
  if (problems.length) {
    throw new AppError("PRECONDITION_FAILED", problems.map((p) => `${p.table} ${p.problem}`).join(" "));
  }
  if (!schema.tables.some((t) => t.kind === "sharded")) {
    throw new AppError("PRECONDITION_FAILED", `No table on legacy has the shard key ${shardKeyColumn}.`);
  }
  return schema;
}

/** Steps 3–6. Refused with CONFLICT while another start of the plan runs (or is being cleaned up). */
export async function startMovement(request: StartRequest, hooks: StartHooks): Promise<StartedMovement> {
  const started = await runExclusivePerPlan(serverEnv().DATABASE_URL, "start", request.planId, () =>
    claimAndStart(request, hooks),
  );
  if (started === null) {
    throw new AppError(
      "CONFLICT",
      "The data movement is being started right now (or a start that stopped is being cleaned up). Wait a moment and reload.",
    );
  }
  return started;
}

async function claimAndStart(request: StartRequest, hooks: StartHooks): Promise<StartedMovement> {
  const { planId, schema } = request;
  const sourceUrl = await databaseUrl(request.source.id);
  // 3. claim: from here on this caller is the only one starting this plan's movement, and no other
  //    plan's movement fills these shards
  const names = replicationNames(planId);
  const claim = await claimStart(planId, names, schema, request.isMovementPhase);
  let replicationCreated = false;
  try {
    // 4. shards: rows left by an earlier copy must go first — this copy upserts what legacy has,
    //    it cannot know what legacy deleted since.
    for (const [index, shard] of request.shards.entries()) {
      const url = await databaseUrl(shard.id);
      await reachable(`Shard "${shard.name}"`, url, async (c) => {
        // The server this connection reached is the one identified before, not whatever the name reaches now.
        await hooks.assertConnectedTo(c, { role: "shard", index });
        await prepareShard(c, shard.name, schema);
        await withClaimHeld(claim, async () => {
          const filled = await nonEmptyTables(c, schema.tables);
          if (filled.length && !request.resetShards) {
            throw new AppError(
              "PRECONDITION_FAILED",
              `Shard "${shard.name}" already holds rows in ${filled.slice(0, 4).join(", ")}${filled.length > 4 ? ` and ${filled.length - 4} more` : ""} (left by an earlier data movement?). ` +
                "This copy would not remove rows legacy deleted since. Start again with “Empty the shard tables first”.",
            );
          }
          if (filled.length) await c.query(`truncate ${schema.tables.map((t) => t.qualified).join(", ")}`);
          // An earlier movement's guard entries mean nothing to this one.
          await c.query(`truncate ${TOUCHED_TABLE}`);
        });
      });
    }

    // 5. publication, then slot (drop leftovers of a cancelled or crashed start first)
    await checkClaimCurrent(claim);
    replicationCreated = true;
    const slotLsn = await reachable(`The legacy database "${request.source.name}"`, sourceUrl, async (c) => {
      await hooks.assertConnectedTo(c, { role: "source" });
      await dropSlot(c, names.slotName, { terminateActive: true });
      await dropPublication(c, names.publicationName);
      await createPublication(
        c,
        names.publicationName,
        schema.tables.map((t) => ({ schema: t.schema, table: t.name })),
      );
      return createSlot(c, names.slotName);
    });

    // 6. preparing → running, with its tasks and the caller's one audit event
    const started: StartedMovement = {
      ...names,
      slotLsn: formatLsn(slotLsn),
      tables: schema.tables.length,
      sharded: schema.tables.filter((t) => t.kind === "sharded").length,
    };
    await db().$transaction(async (tx) => {
      const outcome = await transitionMovement(tx, planId, "prepared", {
        startedAt: claim.startedAt,
        data: { slotLsn: started.slotLsn },
      });
      if (!outcome.ok) {
        throw new AppError(
          "CONFLICT",
          `The data movement was cancelled while it was being started, so it was not started. ${outcome.reason}`,
        );
      }
      await tx.backfillTask.deleteMany({ where: { planId } });
      await tx.tenantCensus.deleteMany({ where: { planId } });
      await tx.backfillTask.createMany({
        data: schema.tables.map((t) => ({
          planId,
          tableName: t.qualified,
          kind: t.kind,
          rowsTotal: BigInt(Math.max(0, Math.round(t.estimatedRows))),
        })),
      });
      await hooks.recordStart(tx, started);
      await tx.$executeRawUnsafe(NOTIFY_ENGINE_SQL, planId);
    });
    return started;
  } catch (error) {
    await releaseClaim(
      claim,
      replicationCreated
        ? () =>
            withClient(sourceUrl, async (c) => {
              await dropSlot(c, names.slotName, { terminateActive: true });
              await dropPublication(c, names.publicationName);
            })
        : undefined,
    ).catch((release) => console.error("[movement] could not undo the claim of a failed start", release));
    throw error;
  }
}
