// The data-movement lifecycle (backfill + forward CDC of one plan): one state machine, persisted in
// data_movement.status, read by every engine job before each step — a paused or cancelled movement
// stops within one chunk or one CDC batch, whichever worker runs it. Every write of the status goes
// through here (engine/state/movement-transition.ts applies it under the row's lock).
//
//   (none) / cancelled ──start──► preparing ──prepared──► running ◄──► paused
//                                     │  └──abandon──► cancelled       │    │
//                                     ▼                                ▼    ▼
//                                  failed ◄────────── (any error) ── cancelling ──► cancelled
//                                     │                                  (slot and publication dropped)
//                                     └──► running (resume after the cause is fixed) / cancelling
//
// `preparing` is the claim a start takes before it touches a shard or legacy: a second start (a
// double-click, a retry, another operator) finds it and is refused instead of repeating the work.
// `abandon` undoes a claim whose start failed before anything ran.
export type MovementStatus = "preparing" | "running" | "paused" | "cancelling" | "cancelled" | "failed";
export type MovementEvent =
  | "start"
  | "prepared"
  | "abandon"
  | "pause"
  | "resume"
  | "cancel"
  | "cancelled"
  | "fail";

/** The status a plan's first movement is created in (a start's claim). */
export const INITIAL_MOVEMENT_STATUS: MovementStatus = "preparing";

const TRANSITIONS: Record<MovementStatus, Partial<Record<MovementEvent, MovementStatus>>> = {
  preparing: { prepared: "running", abandon: "cancelled", fail: "failed", cancel: "cancelling" },
  running: { pause: "paused", cancel: "cancelling", fail: "failed" },
  paused: { resume: "running", cancel: "cancelling", fail: "failed" },
  failed: { resume: "running", cancel: "cancelling" },
  // A failure while cancelling changes nothing: the cancel must still drop the slot.
  cancelling: { cancelled: "cancelled", fail: "cancelling" },
  cancelled: { start: "preparing" },
};

/** The status an operator's event asks for: a second "pause" on a paused movement is told so. */
const WANTS: Partial<Record<MovementEvent, MovementStatus>> = {
  pause: "paused",
  resume: "running",
  cancel: "cancelling",
  start: "preparing",
};

const WHY_NOT: Partial<Record<MovementStatus, string>> = {
  cancelled: "The data movement was cancelled; start a new one.",
  cancelling: "The data movement is already cancelling: its slot and publication are being dropped.",
  preparing:
    "The data movement is being started right now (its shards are being prepared). Wait a moment and reload; if that start was interrupted, cancel the movement and start it again.",
};

/**
 * The next status, or why not. A refusal is about the movement's current status (often a race lost
 * to another operator, or a repeated click), so callers answer it as a conflict, with this reason.
 */
export function nextMovementStatus(
  from: MovementStatus,
  event: MovementEvent,
): { ok: true; to: MovementStatus } | { ok: false; reason: string } {
  const to = TRANSITIONS[from][event];
  if (to) return { ok: true, to };
  if (event === "start" && from !== "preparing" && from !== "cancelling") {
    return {
      ok: false,
      reason: `The data movement is already ${from}: it runs once. Cancel it first to start over.`,
    };
  }
  if (WANTS[event] === from && !WHY_NOT[from]) {
    return { ok: false, reason: `The data movement is already ${from}.` };
  }
  return { ok: false, reason: WHY_NOT[from] ?? `Cannot ${event} a data movement that is ${from}.` };
}

/** Statuses in which replication objects exist on legacy and must eventually be dropped. */
export function holdsReplication(status: MovementStatus): boolean {
  return status !== "cancelled";
}

/** Statuses in which engine jobs do work (the others make them exit at the next step). */
export function isActive(status: MovementStatus): boolean {
  return status === "running";
}
