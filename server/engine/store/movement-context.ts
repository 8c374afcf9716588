// Everything an engine job needs about one plan's data movement, loaded from the store: the
// schema snapshot taken at start, the placement, and pools to legacy and every shard.
import type pg from "pg";
import { serverEnv } from "../../env";
import type { Prisma } from "../../generated/prisma/client";
import { connectionUrlProblem } from "../../schemas/database";
import { decryptSecret } from "../../security/secrets";
import type { SourceSchema } from "../analysis/introspect";
import { hashPlacement, type Placement } from "../router/placement";
import { enginePool } from "../sql/pools";
import { transitionMovement } from "../state/movement-transition";
import { db } from "./db";

export interface MovementContext {
  planId: string;
  schema: SourceSchema;
  placement: Placement;
  sourceUrl: string;
  source: pg.Pool;
  shardUrls: string[];
  shards: pg.Pool[];
  publicationName: string;
  slotName: string;
  /** The slot's consistent point (names the apply origins of this movement's slot). */
  slotLsn: string;
}

/** A registered database's connection URL (stored encrypted). The engine's own store access. */
export async function databaseUrl(databaseId: string): Promise<string> {
  const row = await db().database.findUnique({ where: { id: databaseId }, select: { urlCiphertext: true } });
  if (!row)
    throw new Error(
      `Database ${databaseId} is no longer registered; register it again or cancel the movement.`,
    );
  return registeredUrl(databaseId, row.urlCiphertext);
}

/** A registered database's URL from its stored ciphertext (read along with other rows), checked as databaseUrl does. */
export function registeredUrl(databaseId: string, urlCiphertext: string): string {
  const url = decryptSecret(urlCiphertext, serverEnv().SHARDSHIFT_SECRET_KEY);
  // A URL stored before its parameters and host were checked must not redirect the engine either.
  const problem = connectionUrlProblem(url);
  if (problem) {
    throw new Error(
      `The registered URL of database ${databaseId} is refused: ${problem} Register the database again with a plain URL.`,
    );
  }
  return url;
}

export async function loadMovementContext(planId: string): Promise<MovementContext> {
  const movement = await db().dataMovement.findUniqueOrThrow({ where: { planId } });
  const plan = await db().plan.findUniqueOrThrow({
    where: { id: planId },
    include: { shards: { orderBy: { ordinal: "asc" } } },
  });
  const sourceUrl = await databaseUrl(plan.sourceDatabaseId);
  const shardUrls = await Promise.all(plan.shards.map((s) => databaseUrl(s.databaseId)));
  return {
    planId,
    schema: movement.sourceSchema as unknown as SourceSchema,
    placement: hashPlacement(plan.shards.length),
    sourceUrl,
    source: enginePool(sourceUrl),
    shardUrls,
    shards: shardUrls.map((url) => enginePool(url)),
    publicationName: movement.publicationName,
    slotName: movement.slotName,
    slotLsn: movement.slotLsn ?? "0/0",
  };
}

/** An event on the plan's page. `store` is a transaction's client to record it with that transaction. */
export async function recordEngineEvent(
  planId: string,
  level: "info" | "warn" | "error",
  source: string,
  message: string,
  store: Pick<Prisma.TransactionClient, "engineEvent"> = db(),
) {
  await store.engineEvent.create({ data: { planId, level, source, message } });
}

export async function recordMetric(planId: string, name: string, value: number) {
  await db().metricSample.create({ data: { planId, name, value } });
}

/**
 * Fails a movement through its state machine, with the cause on the movement (shown in the plan's
 * header) and as an error event. Returns false when the movement could not fail from where it is
 * (cancelled meanwhile, already failed).
 */
export async function failMovement(planId: string, source: string, message: string): Promise<boolean> {
  // Through the state machine, under the row's lock: an operator's pause or cancel taken meanwhile wins.
  const outcome = await db().$transaction((tx) =>
    transitionMovement(tx, planId, "fail", { data: { lastError: message } }),
  );
  if (!outcome.ok || outcome.from === outcome.to) return false;
  await recordEngineEvent(planId, "error", source, message);
  return true;
}
