// The data-movement lifecycle (backfill + forward CDC of one plan): one state machine, persisted in
// data_movement.status, read by every engine job before each step — a paused or cancelled movement
// stops within one chunk or one CDC batch, whichever worker runs it.
//
//   preparing ──► running ◄──► paused
//       │            │           │
//       ▼            ▼           ▼
//     failed ◄── (any error)   cancelling ──► cancelled   (slot and publication dropped)
//       │
//       └──► running (resume after the cause is fixed) / cancelling
export type MovementStatus = "preparing" | "running" | "paused" | "cancelling" | "cancelled" | "failed";
export type MovementEvent = "prepared" | "pause" | "resume" | "cancel" | "cancelled" | "fail";

const TRANSITIONS: Record<MovementStatus, Partial<Record<MovementEvent, MovementStatus>>> = {
  preparing: { prepared: "running", fail: "failed", cancel: "cancelling" },
  running: { pause: "paused", cancel: "cancelling", fail: "failed" },
  paused: { resume: "running", cancel: "cancelling", fail: "failed" },
  failed: { resume: "running", cancel: "cancelling" },
  cancelling: { cancelled: "cancelled", fail: "cancelling" },
  cancelled: {},
};

const WHY_NOT: Partial<Record<MovementStatus, string>> = {
  cancelled: "The data movement was cancelled; start a new one.",
  cancelling: "The data movement is being cancelled.",
  preparing: "The shards are still being prepared.",
};

export function nextMovementStatus(
  from: MovementStatus,
  event: MovementEvent,
): { ok: true; to: MovementStatus } | { ok: false; reason: string } {
  const to = TRANSITIONS[from][event];
  if (to) return { ok: true, to };
  return {
    ok: false,
    reason: WHY_NOT[from] ?? `Cannot ${event} a data movement that is ${from}.`,
  };
}

/** Statuses in which replication objects exist on legacy and must eventually be dropped. */
export function holdsReplication(status: MovementStatus): boolean {
  return status !== "cancelled";
}

/** Statuses in which engine jobs do work (the others make them exit at the next step). */
export function isActive(status: MovementStatus): boolean {
  return status === "running";
}
