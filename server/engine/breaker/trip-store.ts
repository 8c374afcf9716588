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
type WriteStore = Pick<Prisma.TransactionClient, "breakerTrip" | "$queryRaw">;

/** The class of the session advisory lock (with hashtext(trip id)) held by the run driving a trip. */
export const BREAKER_LOCK_CLASS = 7_363_900;

/**
 * The run driving `row`: the backend pid of the control-plane session holding the trip's lock.
 * Not stored. Set by the run once it holds the lock; then every write of advanceTrip and
 * noteTripStep happens only while that session still holds it, checked on the server in the
 * write's transaction. A run whose session the server ended without the run hearing it (a cut
 * network: another worker may drive the trip now) changes nothing and stops (TripStateConflict).
 */
const lockHolders = new WeakMap<TripRow, number>();

export function driveTripAs(row: TripRow, lockSessionPid: number): void {
  lockHolders.set(row, lockSessionPid);
}

/**
 * Whether the session of backend `pid` holds trip `tripId`'s lock now, the trip's row locked
 * first (a worker that takes the lock over writes the row only after this transaction ends).
 */
export async function tripLockHeld(tx: WriteStore, tripId: string, pid: number): Promise<boolean> {
  const [held] = await tx.$queryRaw<{ held: boolean }[]>`
    select exists (select 1 from breaker_trip where id = ${tripId}::uuid for update)
       and exists (select 1 from pg_locks l
                   where l.pid = ${pid}::int and l.locktype = 'advisory'
                     and l.classid = ${BREAKER_LOCK_CLASS}::oid
                     and l.objid = (hashtext(${tripId}::text)::bigint & 4294967295)::oid
                     and l.objsubid = 2 and l.granted) as held`;
  return held?.held ?? false;
}

/** The update, conditional on the run's lock session (if any) still holding the trip's lock. */
async function writeTrip(
  row: TripRow,
  store: WriteStore | undefined,
  args: Prisma.BreakerTripUpdateManyArgs,
): Promise<number> {
  const pid = lockHolders.get(row);
  if (pid === undefined) return (await (store ?? db()).breakerTrip.updateMany(args)).count;
  const write = async (tx: WriteStore): Promise<number> => {
    if (!(await tripLockHeld(tx, row.id, pid))) {
      throw new TripStateConflict(
        `Breaker trip ${row.id}: this run's session no longer holds the trip's lock (another worker may drive it). This one stops.`,
      );
    }
    return (await tx.breakerTrip.updateMany(args)).count;
  };
  return store ? write(store) : db().$transaction((tx) => write(tx));
}

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
  options: { note?: string; store?: WriteStore } = {},
): Promise<BreakerStatus> {
  const from = row.status;
  const next = nextBreakerStatus(from, event);
  if (!next.ok) throw new TripStateConflict(next.reason);
  const steps = [...row.steps, stepOf(next.to, options.note)];
  const updated = await writeTrip(row, options.store, {
    where: { id: row.id, status: from },
    data: {
      ...data,
      status: next.to,
      steps: steps as unknown as Prisma.InputJsonValue,
      updatedAt: new Date(),
    },
  });
  if (updated !== 1) {
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
  options: { note?: string; store?: WriteStore } = {},
): Promise<void> {
  const steps = [...row.steps, stepOf(step, options.note)];
  const updated = await writeTrip(row, options.store, {
    where: { id: row.id, status: row.status },
    data: { ...data, steps: steps as unknown as Prisma.InputJsonValue, updatedAt: new Date() },
  });
  if (updated !== 1) {
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
