// What the engine has actually done for a plan, as the plan's state machine and timeline judge it.
// Plain data, read from the store by services/plans/engine-facts.ts: the deciders stay pure.
import type { BreakerStatus } from "./breaker";
import type { MovementStatus } from "./movement";

export interface EngineFacts {
  /** The data movement (backfill + forward CDC); null if none was ever started. */
  movement: { status: MovementStatus; confirmedLsn: string | null; lastError: string | null } | null;
  backfill: {
    tables: number;
    tablesDone: number;
    rowsCopied: number;
    /** When the last table finished, once every table is done. */
    finishedAt: Date | null;
  };
  /** The latest CDC lag measurement. */
  lag: { ms: number; at: Date } | null;
  parity: {
    /** The newest complete full check (every table, every tenant). */
    lastFull: { finishedAt: Date; rowsVerified: number; rowsTotal: number; differences: number } | null;
    openMismatches: number;
    checking: boolean;
  };
  /** Tenants the routing map sends to a shard (cut over); absent is none. */
  tenantsOnShards?: number;
  /** Tenants the census counted; null or absent: no census yet. */
  tenantsTotal?: number | null;
  /** Tenants with a cutover attempt in flight (requested, freezing, flipping …). */
  tenantsCuttingOver?: number;
  /** When the last tenant now on a shard got there (its route's last change); null: none is. */
  lastToShardAt?: Date | null;
  /**
   * The cohort ladder: how many cohorts are drawn, how many are wholly on shards, and — judged only
   * where a decision needs it (leaving the backfill) — whether cohort 1's gates are open, and why
   * not. Absent or null: no ladder is drawn.
   */
  cohorts?: {
    drawn: number;
    promoted: number;
    firstGates: { open: boolean; why: string | null } | null;
  } | null;
  /** The plan's breaker: armed (and since when it was re-armed; null: never tripped) or not. */
  breaker?: { status: BreakerStatus; armedSince: Date | null };
}

export const NO_ENGINE_FACTS: EngineFacts = {
  movement: null,
  backfill: { tables: 0, tablesDone: 0, rowsCopied: 0, finishedAt: null },
  lag: null,
  parity: { lastFull: null, openMismatches: 0, checking: false },
};

/** A lag measurement older than this no longer says anything about now (CDC records one a second). */
export const LAG_FRESH_MS = 15_000;
/** Parity runs a full check every 10 min while it runs: a clean result older than two is stale. */
export const PARITY_FRESH_MS = 20 * 60_000;

export function cdcStreaming(facts: EngineFacts): boolean {
  const status = facts.movement?.status;
  return status === "running" || status === "paused";
}

export function lagIsFresh(facts: EngineFacts, now: Date): boolean {
  return facts.lag !== null && now.getTime() - facts.lag.at.getTime() <= LAG_FRESH_MS;
}

export function backfillDone(facts: EngineFacts): boolean {
  return facts.backfill.tables > 0 && facts.backfill.tablesDone === facts.backfill.tables;
}

/**
 * Parity holds only while it still means something: a full check that found nothing, finished after
 * the backfill (so every copied row was there to verify), no open mismatch since, not older than two
 * full-check intervals, and CDC still streaming (otherwise the shards drift from legacy unseen).
 * Returns null when it holds, else why not — "stale" when it held once and no longer does.
 */
export function parityStanding(
  facts: EngineFacts,
  now: Date,
): { holds: true } | { holds: false; stale: boolean; why: string } {
  const full = facts.parity.lastFull;
  if (facts.parity.openMismatches > 0) {
    const n = facts.parity.openMismatches;
    return {
      holds: false,
      stale: false,
      why: `${n} row${n === 1 ? "" : "s"} differ${n === 1 ? "s" : ""} from legacy`,
    };
  }
  if (!full || full.rowsVerified === 0)
    return { holds: false, stale: false, why: "no full check has passed yet" };
  if (full.differences > 0)
    return { holds: false, stale: false, why: "the last full check found differences" };
  if (full.rowsVerified < full.rowsTotal) {
    const nf = new Intl.NumberFormat("en-US");
    return {
      holds: false,
      stale: false,
      why: `the last full check verified ${nf.format(full.rowsVerified)} of ${nf.format(full.rowsTotal)} rows`,
    };
  }
  if (!facts.backfill.finishedAt || full.finishedAt < facts.backfill.finishedAt) {
    return { holds: false, stale: false, why: "no full check has run since the backfill finished" };
  }
  if (!cdcStreaming(facts))
    return { holds: false, stale: true, why: "CDC is not streaming, so the shards are not kept equal" };
  if (now.getTime() - full.finishedAt.getTime() > PARITY_FRESH_MS) {
    return { holds: false, stale: true, why: "the last clean full check is more than 20 min old" };
  }
  return { holds: true };
}

/** Every tenant the census counted is on a shard (false without a census or with no tenant). */
export function everyTenantOnShards(facts: EngineFacts): boolean {
  const total = facts.tenantsTotal ?? 0;
  return total > 0 && (facts.tenantsOnShards ?? 0) >= total;
}

/**
 * When the breaker's soak began: the breaker armed with every tenant on the shards, from the later
 * of the two (the last tenant's arrival, the last re-arm). Null while either is not true now — a
 * trip, a rollback or a tenant back on legacy restarts the soak when the conditions hold again.
 */
export function breakerSoakSince(facts: EngineFacts): Date | null {
  if (!everyTenantOnShards(facts) || facts.breaker?.status !== "armed" || !facts.lastToShardAt) return null;
  const armed = facts.breaker.armedSince;
  return armed && armed > facts.lastToShardAt ? armed : facts.lastToShardAt;
}
