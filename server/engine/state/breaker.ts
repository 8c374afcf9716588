// The breaker's trip: an explicit state machine, persisted per trip (breaker_trip), that a
// restarted engine resumes or undoes. The protocol and why each step is where it is:
// docs/breaker.md.
//
//   (trip) ──► tripped ──claimed──► rolling_back ──flipped──► rolling_back (flip_version set) ──finished──► rolled_back
//                 ▲                      │ │                   (the commit point: one control-plane
//                 └──────interrupted─────┘ │                    transaction gives every tenant of the
//                                          └──gave-up──► failed set to legacy in one map version)
//   rolling_back (flip_version set, or nothing to flip) ──held──► failed
//   rolled_back | failed ──rearmed──► armed
//
// Before the flip the shards still own the set: a missed budget or any failure gives up (fences
// lifted, the tenants stay on their shards, `failed` says what was left and why); a worker killed
// there leaves the trip for the next one, which lifts the fences and puts it back to `tripped`
// with the reason (and, within MAX_BREAKER_ATTEMPTS, drives it again: the trip still stands).
// From the flip on, legacy owns every tenant of the set: a restart only finishes. The exception is
// a shard that is DOWN whose writes legacy cannot be shown to hold: its tenants are `held` (frozen,
// still the shard's), the rest flip, and the trip ends `failed` for a human (docs/breaker.md).
export type BreakerStatus = "tripped" | "rolling_back" | "rolled_back" | "failed" | "armed";

export type BreakerEvent = "claimed" | "interrupted" | "gave-up" | "finished" | "held" | "rearmed";

/** Attempts a trip gets (each one a claim by a worker) before it is left `failed` for a human. */
export const MAX_BREAKER_ATTEMPTS = 3;

const TRANSITIONS: Record<BreakerStatus, Partial<Record<BreakerEvent, BreakerStatus>>> = {
  tripped: { claimed: "rolling_back", "gave-up": "failed" },
  rolling_back: { interrupted: "tripped", "gave-up": "failed", finished: "rolled_back", held: "failed" },
  rolled_back: { rearmed: "armed" },
  failed: { rearmed: "armed" },
  armed: {},
};

export function nextBreakerStatus(
  from: BreakerStatus,
  event: BreakerEvent,
): { ok: true; to: BreakerStatus } | { ok: false; reason: string } {
  const to = TRANSITIONS[from][event];
  if (to) return { ok: true, to };
  if (event === "rearmed" && breakerInFlight(from)) {
    return {
      ok: false,
      reason: `The breaker's rollback is ${from === "tripped" ? "waiting for a worker" : "running"}: re-arm it once it has ended (rolled back or failed).`,
    };
  }
  if (event === "rearmed" && from === "armed") return { ok: false, reason: "The breaker is already armed." };
  return { ok: false, reason: `A trip that is ${from} cannot take '${event}'.` };
}

/** A trip a worker still has to drive (or take over). */
export function breakerInFlight(status: BreakerStatus): boolean {
  return status === "tripped" || status === "rolling_back";
}

/**
 * What a worker that finds a trip `rolling_back` with nobody driving it must do: before the flip
 * the fences' holders died with the old worker, so the drain cannot be trusted to cover every
 * write — undo; after it the map already names legacy — finish.
 */
export function breakerRecoveryFor(flipVersion: bigint | null): "undo" | "finish" {
  return flipVersion === null ? "undo" : "finish";
}

/** The plan's breaker as a person reads it: armed unless its newest trip is still standing. */
export function planBreakerState(newest: { status: string } | null): BreakerStatus {
  return (newest?.status as BreakerStatus | undefined) ?? "armed";
}
