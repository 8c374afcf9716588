// The breaker in words, for the header control, its dialog, the breaker page and the cohorts page:
// pure, so what an operator reads about a scope or a trip's outcome is tested beside it.
import type { TBreakerScope } from "@/server/schemas/breaker";
import type { Tone } from "../ui/badge";

export type BreakerState = "armed" | "tripped" | "rolling_back" | "rolled_back" | "failed";
export type ScopeKind = TBreakerScope["kind"];

export const BREAKER_STATE_WORDS: Record<BreakerState, { word: string; tone: Tone }> = {
  armed: { word: "Armed", tone: "ok" },
  tripped: { word: "Tripped · waiting for a worker", tone: "danger" },
  rolling_back: { word: "Rolling back", tone: "warn" },
  rolled_back: { word: "Rolled back", tone: "danger" },
  failed: { word: "Rollback failed", tone: "danger" },
};

/** A trip still moving tenants: no second trip, no re-arm until it ends. */
export function tripInFlight(state: BreakerState): boolean {
  return state === "tripped" || state === "rolling_back";
}

/** A trip that has ended and is not re-armed yet: an admin may re-arm it. */
export function rearmable(state: BreakerState): boolean {
  return state === "rolled_back" || state === "failed";
}

/** The dialog's form, as typed: turned into a scope only when it names one. */
export interface ScopeForm {
  kind: ScopeKind;
  tenants: string;
  databaseId: string;
  ordinal: number | null;
  andLater: boolean;
}

/** Tenant keys typed one a line, or separated by commas or spaces; duplicates dropped. */
export function parseTenantList(text: string): string[] {
  return [...new Set(text.split(/[\s,]+/).filter((t) => t.length > 0))];
}

/** The scope the form names, or why it names none yet (shown in place of the preview). */
export function scopeOfForm(form: ScopeForm): { scope: TBreakerScope } | { missing: string } {
  switch (form.kind) {
    case "tenants": {
      const tenants = parseTenantList(form.tenants);
      return tenants.length > 0
        ? { scope: { kind: "tenants", tenants } }
        : { missing: "Type the tenant keys to roll back, one a line or separated by commas." };
    }
    case "shard":
      return form.databaseId
        ? { scope: { kind: "shard", databaseId: form.databaseId } }
        : { missing: "Choose the shard whose tenants go back to legacy." };
    case "cohort":
      return form.ordinal !== null
        ? { scope: { kind: "cohort", ordinal: form.ordinal, andLater: form.andLater } }
        : { missing: "Choose the cohort whose tenants go back to legacy (draw the ladder first)." };
    case "all":
      return { scope: { kind: "all" } };
  }
}

export function durationText(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  const s = ms / 1_000;
  if (s < 120) return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
  return `${Math.round(s / 60)} min`;
}

export interface TripLike {
  status: BreakerState;
  tenants: number;
  tenantsMoved: number;
  tenantsLeft: number;
  error: string | null;
  tripToFlipMs: number | null;
  freezeMs: number | null;
  flipVersion: number | null;
}

/** What a trip did, once it ended: a sentence for the dialog and the history. Null while in flight. */
export function tripOutcome(trip: TripLike): string | null {
  // A re-armed trip reads "armed": whether it had rolled back shows in its flip (or its clean end).
  const rolledBack =
    trip.status === "rolled_back" ||
    (trip.status === "armed" && (trip.flipVersion !== null || trip.error === null));
  if (rolledBack) {
    if (trip.tenantsMoved === 0 && trip.tenants === 0)
      return "Nothing to roll back: no tenant of it was on a shard.";
    const n = trip.tenantsMoved;
    const paused = trip.freezeMs === null ? "" : `; their writes paused for ${durationText(trip.freezeMs)}`;
    const took = trip.tripToFlipMs === null ? "" : ` ${durationText(trip.tripToFlipMs)} after the trip`;
    return `${n} tenant${n === 1 ? "" : "s"} back on legacy${took}${paused}. No acknowledged write was lost.`;
  }
  if (trip.status === "failed" || trip.status === "armed") {
    const left =
      trip.tenantsLeft > 0
        ? `${trip.tenantsLeft} tenant${trip.tenantsLeft === 1 ? "" : "s"} left on ${trip.tenantsLeft === 1 ? "its shard" : "their shards"}`
        : "Every tenant stayed where it was";
    return `${left}: ${trip.error ?? "the rollback gave up"}`;
  }
  return null;
}
