// The trip's persisted state (breaker_trip): every status change goes through the state machine
// (state/breaker.ts) with a step entry, guarded by the status it leaves, so a second writer (there
// should be none: the trip's lock says who drives it) changes nothing.
import type { Prisma } from "../../generated/prisma/client";
import type { TBreakerScope } from "../../schemas/breaker";
import { type BreakerEvent, type BreakerStatus, nextBreakerStatus } from "../state/breaker";
import { db } from "../store/db";

export interface TripStep {
  status: string;
  at: string;
  note?: string;
}

export interface TenantOutcome {
  /** The shard's name it was on when the freeze began. */
  from: string;
  /**
   * held: its shard is down and legacy cannot be shown to hold every write the shard acknowledged
   * for it; it stays frozen on the map, owned by the shard, until a human decides (docs/breaker.md).
   */
  outcome: "rolled_back" | "left_on_shard" | "already_on_legacy" | "held";
  reason?: string;
}

export interface TripRow {
  id: string;
  planId: string;
  status: BreakerStatus;
  scope: TBreakerScope;
  trigger: string;
  reason: string;
  requestedByEmail: string;
  budgetMs: number;
  tenants: { tenantKey: string; ownerId: string }[];
  outcomes: Record<string, TenantOutcome>;
  freezeLsns: Record<string, string>;
  freezeVersion: bigint | null;
  flipVersion: bigint | null;
  attempts: number;
  error: string | null;
  steps: TripStep[];
  createdAt: Date;
  freezeStartedAt: Date | null;
  flippedAt: Date | null;
  freezeEndedAt: Date | null;
}

type Store = Pick<Prisma.TransactionClient, "breakerTrip">;

export async function readTrip(id: string, store: Store = db()): Promise<TripRow | null> {
  const row = await store.breakerTrip.findUnique({ where: { id } });
  if (!row) return null;
  return {
    ...row,
    status: row.status as BreakerStatus,
    scope: row.scope as unknown as TBreakerScope,
    tenants: (row.tenants ?? []) as unknown as TripRow["tenants"],
    outcomes: (row.outcomes ?? {}) as unknown as TripRow["outcomes"],
    freezeLsns: (row.freezeLsns ?? {}) as unknown as TripRow["freezeLsns"],
    steps: (Array.isArray(row.steps) ? row.steps : []) as unknown as TripStep[],
  };
}

export class TripStateConflict extends Error {}

/** Moves the trip by `event` with `data` in the same write; mutates `row` to match. */
export async function advanceTrip(
  row: TripRow,
  event: BreakerEvent,
  data: Omit<Prisma.BreakerTripUpdateManyMutationInput, "status" | "steps"> = {},
  options: { note?: string; store?: Store } = {},
): Promise<BreakerStatus> {
  const from = row.status;
  const next = nextBreakerStatus(from, event);
  if (!next.ok) throw new TripStateConflict(next.reason);
  const steps = [...row.steps, stepOf(next.to, options.note)];
  const updated = await (options.store ?? db()).breakerTrip.updateMany({
    where: { id: row.id, status: from },
    data: {
      ...data,
      status: next.to,
      steps: steps as unknown as Prisma.InputJsonValue,
      updatedAt: new Date(),
    },
  });
  if (updated.count !== 1) {
    throw new TripStateConflict(
      `Breaker trip ${row.id} is no longer ${from}: another worker changed it. This one stops.`,
    );
  }
  row.status = next.to;
  row.steps = steps;
  return next.to;
}

/** A step inside a status (fenced, drained, flipped): recorded, the status unchanged. */
export async function noteTripStep(
  row: TripRow,
  step: string,
  data: Omit<Prisma.BreakerTripUpdateManyMutationInput, "status" | "steps"> = {},
  options: { note?: string; store?: Store } = {},
): Promise<void> {
  const steps = [...row.steps, stepOf(step, options.note)];
  const updated = await (options.store ?? db()).breakerTrip.updateMany({
    where: { id: row.id, status: row.status },
    data: { ...data, steps: steps as unknown as Prisma.InputJsonValue, updatedAt: new Date() },
  });
  if (updated.count !== 1) {
    throw new TripStateConflict(
      `Breaker trip ${row.id} is no longer ${row.status}: another worker changed it. This one stops.`,
    );
  }
  row.steps = steps;
}

/** A step entry as noteTripStep appends it (for a step written by another statement: trip-map-change.ts). */
export function stepOf(status: string, note: string | undefined): TripStep {
  const step: TripStep = { status, at: new Date().toISOString() };
  if (note) step.note = note.slice(0, 1000);
  return step;
}
