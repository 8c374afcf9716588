// One tenant's cutover (or its way back): an explicit state machine, persisted per attempt, that a
// restarted engine resumes or aborts from. The protocol and why each step is where it is:
// docs/cutover.md.
//
//   requested ──claimed──► prechecking ──fenced──► fencing ──quiesced──► draining ──flipped──► flipped ──finished──► done
//        │                     │                     │        (the commit point: one control-plane
//        │                     └──abort──┐           │         transaction writes the new owner, the
//        └──precheck-failed──► aborted   ▼           │         map version and this status)
//                                     aborting ◄─abort┘
//                                        └──aborted──► aborted
//
// Before `flipped` the old owner is the owner: any failure, a missed freeze budget or a restarted
// engine aborts, lifting the fence so writes resume where they were. From `flipped` on the new owner
// is the owner: a restart finishes the cutover (fences, reverse replication, unfreeze); it never
// goes back on its own — going back is a new cutover in the other direction.
export type CutoverStatus =
  | "requested"
  | "prechecking"
  | "fencing"
  | "draining"
  | "flipped"
  | "done"
  | "aborting"
  | "aborted";

export type CutoverEvent =
  | "claimed"
  | "fenced"
  | "precheck-failed"
  | "quiesced"
  | "flipped"
  | "finished"
  | "abort"
  | "aborted";

/** Which way a tenant moves: onto its shard, or back to legacy. Both run the same protocol. */
export type CutoverDirection = "to-shard" | "to-legacy";

const TRANSITIONS: Record<CutoverStatus, Partial<Record<CutoverEvent, CutoverStatus>>> = {
  // An operator's request, waiting for a worker: claiming it is the worker's first write.
  requested: { claimed: "prechecking", abort: "aborted" },
  // Nothing is frozen yet: a failed pre-check ends the attempt without touching writes.
  prechecking: { fenced: "fencing", "precheck-failed": "aborted", abort: "aborted" },
  fencing: { quiesced: "draining", abort: "aborting" },
  draining: { flipped: "flipped", abort: "aborting" },
  flipped: { finished: "done" },
  aborting: { aborted: "aborted" },
  done: {},
  aborted: {},
};

export function nextCutoverStatus(
  from: CutoverStatus,
  event: CutoverEvent,
): { ok: true; to: CutoverStatus } | { ok: false; reason: string } {
  const to = TRANSITIONS[from][event];
  if (to) return { ok: true, to };
  if (event === "abort" && from === "flipped") {
    return {
      ok: false,
      reason:
        "The tenant was already flipped to its new owner: the cutover can only finish. To go back, cut the tenant over in the other direction.",
    };
  }
  if (from === "done" || from === "aborted") {
    return { ok: false, reason: `This cutover has ended (${from}); start a new one.` };
  }
  return { ok: false, reason: `A cutover that is ${from} cannot take '${event}'.` };
}

/** Statuses in which the attempt still has work to do (a worker must own it). */
export function cutoverInFlight(status: CutoverStatus): boolean {
  return status !== "done" && status !== "aborted";
}

/** Statuses in which the tenant's writes are held: its freeze window is open. */
export function cutoverFreezes(status: CutoverStatus): boolean {
  return status === "fencing" || status === "draining" || status === "flipped" || status === "aborting";
}

/**
 * What a worker that finds an attempt in `status` after a restart must do. Before the commit point
 * the fence's holder (the session that waited out in-flight writes) died with the old worker, so the
 * drain cannot be trusted to have covered every write: abort. After it, the map already names the
 * new owner: finish.
 */
export function recoveryFor(status: CutoverStatus): "abort" | "finish" | "none" {
  switch (status) {
    case "prechecking":
    case "fencing":
    case "draining":
    case "aborting":
      return "abort";
    case "flipped":
      return "finish";
    // 'requested': nothing was done yet, the next worker claims it as any request.
    default:
      return "none";
  }
}
