// What a cutover does and where one stands, in words a TPM reads without knowing the protocol
// (docs/cutover.md): the dry run's sentence, each status's badge and meaning, and the outcome with
// what to do next. Pure, so the dialog, the table and their tests share one wording.
import type { Tone } from "@/components/ui/badge";

export type CutoverStatus =
  | "requested"
  | "prechecking"
  | "fencing"
  | "draining"
  | "flipped"
  | "done"
  | "aborting"
  | "aborted";

export const CUTOVER_STATUS: Record<CutoverStatus, { label: string; tone: Tone; meaning: string }> = {
  requested: { label: "Requested", tone: "neutral", meaning: "waiting for a worker to pick it up" },
  prechecking: {
    label: "Checking",
    tone: "info",
    meaning: "checking that replication is running and fast enough; writes are not paused",
  },
  fencing: {
    label: "Pausing writes",
    tone: "warn",
    meaning: "writes are paused; waiting for writes already in flight to finish",
  },
  draining: {
    label: "Catching up",
    tone: "warn",
    meaning: "writes are paused while the new owner applies the last changes",
  },
  flipped: {
    label: "Switched",
    tone: "info",
    meaning: "the new owner owns the tenant; resuming its writes there",
  },
  done: { label: "Done", tone: "ok", meaning: "the new owner takes the tenant's writes" },
  aborting: {
    label: "Undoing",
    tone: "warn",
    meaning: "stopped before the switch; resuming writes on the old owner",
  },
  aborted: {
    label: "Aborted",
    tone: "danger",
    meaning: "stopped before the switch: the old owner still owns the tenant",
  },
};

/** The steps of a successful cutover, in order (for the dialog's progress line). */
export const CUTOVER_STEPS: CutoverStatus[] = [
  "requested",
  "prechecking",
  "fencing",
  "draining",
  "flipped",
  "done",
];

export function statusInfo(status: string) {
  return (
    CUTOVER_STATUS[status as CutoverStatus] ?? { label: status, tone: "neutral" as Tone, meaning: status }
  );
}

export function cutoverEnded(status: string): boolean {
  return status === "done" || status === "aborted";
}

/** 850 → "850 ms", 2000 → "2 s", 1500 → "1.5 s". */
export function durationText(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  const s = ms / 1_000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}

export interface PreviewLike {
  tenantKey: string;
  direction: "to-shard" | "to-legacy";
  from: { name: string };
  to: { name: string };
  budgetMs: number;
}

/** "Writes to tenant 42 pause for up to 2 s while shard-2 catches up; then shard-2 owns it and …" */
export function dryRunSentence(p: PreviewLike): string {
  const pause = `Writes to tenant ${p.tenantKey} pause for up to ${durationText(p.budgetMs)} while ${p.to.name} catches up`;
  return p.direction === "to-shard"
    ? `${pause}; then ${p.to.name} owns it and ${p.from.name} keeps receiving its changes, so it can come back.`
    : `${pause}; then ${p.to.name} owns it again and ${p.from.name} keeps receiving its changes.`;
}

/** The button that opens the dialog: "Cut over to shard-2", or "Back to legacy". */
export function cutoverButtonLabel(owner: { kind: "legacy" | "shard" }, target: string | null): string {
  if (owner.kind === "shard") return "Back to legacy";
  return target ? `Cut over to ${target}` : "Cut over to its shard";
}

export interface AttemptLike {
  tenantKey: string;
  status: string;
  fromName: string;
  toName: string;
  error: string | null;
  freezeMs: number | null;
}

/** The outcome of an ended attempt: what happened and, after an abort, what to do next. */
export function outcomeText(a: AttemptLike): { tone: "ok" | "error"; title: string; detail: string } | null {
  if (a.status === "done") {
    const freeze = a.freezeMs === null ? "" : ` Its writes were paused for ${durationText(a.freezeMs)}.`;
    return {
      tone: "ok",
      title: `Tenant ${a.tenantKey} is on ${a.toName}.`,
      detail: `${a.toName} takes its writes now; ${a.fromName} keeps receiving its changes.${freeze}`,
    };
  }
  if (a.status === "aborted") {
    return {
      tone: "error",
      title: `Cutover aborted: tenant ${a.tenantKey} stays on ${a.fromName}.`,
      detail: `${a.error ?? "No reason was recorded."} Nothing was switched: its writes go to ${a.fromName} as before. Fix what the reason names, then try again (a new attempt starts from scratch).`,
    };
  }
  return null;
}
