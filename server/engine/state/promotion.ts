// A cohort's promotion: a durable job, persisted in `promotion` (one row) and `promotion_tenant`
// (its work list), that a worker drives and a restarted worker resumes from those rows alone.
//
//   requested ──claimed──► running ──pause──► paused ──resume──► running
//       │                    │  │               │
//       │                    │  └──finished──► done            (every tenant done or aborted)
//       │                  stop / gate-failed  stop
//       │                    ▼                 ▼
//       └──stop──────────► stopping ──drained──► stopped | failed   (in-flight cutovers ended)
//
// "stopping" lets the cutovers already in flight end (a cutover is never cut short: before its
// flip it aborts by itself, after it finishes); none is requested. It ends "failed" when a gate
// turned to fail mid-promotion (the judgement is kept), "stopped" when an operator stopped it.
// An ended promotion reopens (running) when an operator retries one of its aborted tenants.
export const PROMOTION_STATUSES = [
  "requested",
  "running",
  "paused",
  "stopping",
  "done",
  "stopped",
  "failed",
] as const;
export type PromotionStatus = (typeof PROMOTION_STATUSES)[number];

export type PromotionEvent =
  | "claimed"
  | "pause"
  | "resume"
  | "stop"
  | "gate-failed"
  | "finished"
  | "drained"
  | "retry";

export const PROMOTION_ENDED: readonly PromotionStatus[] = ["done", "stopped", "failed"];
/** A worker drives these (requested: claims it first). */
export const PROMOTION_DRIVEN: readonly PromotionStatus[] = ["requested", "running", "paused", "stopping"];

const TRANSITIONS: Record<PromotionStatus, Partial<Record<PromotionEvent, PromotionStatus>>> = {
  requested: { claimed: "running", stop: "stopping" },
  running: { pause: "paused", stop: "stopping", "gate-failed": "stopping", finished: "done" },
  // Paused: no new cutover is requested; those in flight end by themselves.
  paused: { resume: "running", stop: "stopping", "gate-failed": "stopping" },
  stopping: { drained: "stopped" },
  done: { retry: "running" },
  stopped: { retry: "running" },
  failed: { retry: "running" },
};

export function nextPromotionStatus(
  from: PromotionStatus,
  event: PromotionEvent,
  /** Who stopped a stopping promotion: "gate" makes it end failed. */
  stoppedBy: string | null = null,
): { ok: true; to: PromotionStatus } | { ok: false; reason: string } {
  if (from === "stopping" && event === "drained") return { ok: true, to: stoppedStatus(stoppedBy) };
  const to = TRANSITIONS[from]?.[event];
  if (to) return { ok: true, to };
  return { ok: false, reason: refusal(from, event) };
}

function refusal(from: PromotionStatus, event: PromotionEvent): string {
  if (PROMOTION_ENDED.includes(from) && event !== "retry") {
    return `The promotion has ended (${from}): start a new one, or retry one of its aborted tenants.`;
  }
  if (event === "pause" && from === "paused") return "The promotion is already paused.";
  if (event === "resume" && from !== "paused") return `Only a paused promotion resumes; this one is ${from}.`;
  if (from === "stopping") return "The promotion is stopping: its cutovers in flight are ending.";
  if (event === "pause" && from === "requested") {
    return "No worker has started the promotion yet: stop it instead, or wait for it to run.";
  }
  return `A ${from} promotion cannot ${event}.`;
}

/** What a "stopping" promotion ends as: failed when a gate stopped it, stopped when a person did. */
export function stoppedStatus(stoppedBy: string | null): PromotionStatus {
  return stoppedBy === "gate" ? "failed" : "stopped";
}

export type PromotionTenantStatus = "pending" | "requested" | "done" | "aborted";
