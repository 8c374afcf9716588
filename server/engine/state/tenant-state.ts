// One tenant's migration state, as every page that shows a tenant names it:
//
//   copying ──► ready ──► cutting over ──► on shard ──► rolling back ──► on legacy
//                              │  ▲                          │               │
//                              ▼  └──────── (a new attempt) ─┼───────────────┘
//                            failed ◄────────────────────────┘
//
// Derived, never stored: each state is a fact other rows already hold durably, in the transaction
// that makes it true — the owner in tenant_route (the flip's commit point), the attempt in flight
// and its error in tenant_cutover (the cutover's own state machine, engine/state/cutover.ts), the
// copy in the census and the backfill's checkpoints. A tenant_state row would be a third copy,
// written in another transaction by another process, free to disagree with them after a crash;
// deriving costs one join and can never be stale.
import type { CutoverDirection, CutoverStatus } from "./cutover";
import { cutoverInFlight } from "./cutover";

export const TENANT_STATES = [
  "copying",
  "ready",
  "cutting_over",
  "on_shard",
  "rolling_back",
  "on_legacy",
  "failed",
] as const;
export type TenantState = (typeof TENANT_STATES)[number];

export const TENANT_STATE_LABEL: Record<TenantState, string> = {
  copying: "copying",
  ready: "ready",
  cutting_over: "cutting over",
  on_shard: "on shard",
  rolling_back: "rolling back",
  on_legacy: "on legacy",
  failed: "failed",
};

export interface TenantStateFacts {
  /** Every row legacy held of the tenant at the census is on its shard (backfill past it). */
  copied: boolean;
  /** The routing map's owner: true when a shard owns the tenant. */
  onShard: boolean;
  /** The tenant's newest cutover attempt, if any. */
  latestCutover: {
    direction: CutoverDirection;
    status: CutoverStatus | "requested";
    error: string | null;
  } | null;
}

export function tenantState(facts: TenantStateFacts): { state: TenantState; error: string | null } {
  const attempt = facts.latestCutover;
  if (attempt && (attempt.status === "requested" || cutoverInFlight(attempt.status))) {
    return { state: attempt.direction === "to-shard" ? "cutting_over" : "rolling_back", error: null };
  }
  // An attempt that ended without moving the tenant, on an error: the last word until a new attempt.
  if (attempt?.status === "aborted" && attempt.error) return { state: "failed", error: attempt.error };
  if (facts.onShard) return { state: "on_shard", error: null };
  if (attempt?.direction === "to-legacy" && attempt.status === "done")
    return { state: "on_legacy", error: null };
  return { state: facts.copied ? "ready" : "copying", error: null };
}

/** The moves the diagram allows (an operator's abort returns an attempt to where it started). */
export const TENANT_STATE_MOVES: Record<TenantState, readonly TenantState[]> = {
  copying: ["ready", "cutting_over"],
  ready: ["cutting_over"],
  cutting_over: ["on_shard", "failed", "ready", "copying", "on_legacy"],
  on_shard: ["rolling_back"],
  rolling_back: ["on_legacy", "failed", "on_shard"],
  on_legacy: ["cutting_over"],
  failed: ["cutting_over", "rolling_back"],
};
