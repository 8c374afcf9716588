// The attempt's persisted state (tenant_cutover): every status change goes through the state
// machine (state/cutover.ts) and is written with a step entry, guarded by the status it came from,
// so a second writer (there should be none: the attempt's lock says who drives it) changes nothing.
import type { Prisma } from "../../generated/prisma/client";
import { type CutoverEvent, type CutoverStatus, nextCutoverStatus } from "../state/cutover";
import { db } from "../store/db";

export interface CutoverStep {
  status: string;
  at: string;
  note?: string;
  /** On the attempt's last step: each step's duration in ms (run-cutover.ts), for the bench's breakdown. */
  timings?: Record<string, number>;
}

export interface CutoverRow {
  id: string;
  planId: string;
  tenantKey: string;
  direction: "to-shard" | "to-legacy";
  fromDatabaseId: string | null;
  toDatabaseId: string | null;
  status: CutoverStatus | "requested";
  budgetMs: number;
  freezeLsn: string | null;
  flipVersion: bigint | null;
  freezeStartedAt: Date | null;
  freezeEndedAt: Date | null;
  steps: CutoverStep[];
  requestedByEmail: string;
  reason: string;
}

type Store = Pick<Prisma.TransactionClient, "tenantCutover">;

export async function readCutover(id: string, store: Store = db()): Promise<CutoverRow | null> {
  const row = await store.tenantCutover.findUnique({ where: { id } });
  if (!row) return null;
  return {
    ...row,
    direction: row.direction as CutoverRow["direction"],
    status: row.status as CutoverRow["status"],
    steps: (Array.isArray(row.steps) ? row.steps : []) as unknown as CutoverStep[],
  };
}

export class CutoverStateConflict extends Error {}

/**
 * Moves the attempt by `event` (refused by the state machine, or if the row is no longer in the
 * status this runner holds), with `data` in the same write. Mutates `row` to match.
 */
export async function advanceCutover(
  row: CutoverRow,
  event: CutoverEvent,
  data: Omit<Prisma.TenantCutoverUpdateManyMutationInput, "status" | "steps"> = {},
  options: { note?: string; store?: Store; timings?: Record<string, number> } = {},
): Promise<CutoverStatus> {
  const from = row.status;
  const next = nextCutoverStatus(from, event);
  if (!next.ok) throw new CutoverStateConflict(next.reason);
  const step: CutoverStep = { status: next.to, at: new Date().toISOString() };
  if (options.note) step.note = options.note.slice(0, 500);
  if (options.timings && Object.keys(options.timings).length > 0) step.timings = { ...options.timings };
  const steps = [...row.steps, step];
  const updated = await (options.store ?? db()).tenantCutover.updateMany({
    where: { id: row.id, status: from },
    data: {
      ...data,
      status: next.to,
      steps: steps as unknown as Prisma.InputJsonValue,
      updatedAt: new Date(),
    },
  });
  if (updated.count !== 1) {
    throw new CutoverStateConflict(
      `Cutover ${row.id} is no longer ${from}: another worker changed it. This one stops.`,
    );
  }
  row.status = next.to;
  row.steps = steps;
  return next.to;
}
