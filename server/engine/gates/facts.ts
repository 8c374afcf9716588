// The measured facts cohort gates and trip rules judge: plain data, read from the engine's store
// by load-facts.ts, so every judgement is a pure function that tests can feed directly.
import type { Sample } from "./judgement";

export interface ShardReachability {
  ordinal: number;
  name: string;
  /** The newest probe of the shard, and whether it answered. Null: never probed. */
  lastProbeAt: Date | null;
  reachable: boolean | null;
  /** The newest probe it answered. */
  lastReachableAt: Date | null;
  /**
   * The first probe it failed after its last answer (null: the newest probe answered; absent:
   * not measured, `lastReachableAt` stands for it). The outage is measured from here, not from the
   * last answer: after a gap in the probes (a worker down, a restart) one failed probe must not
   * count as an outage as long as the gap.
   */
  downSince?: Date | null;
}

export interface SdkErrorCounts {
  ordinal: number;
  name: string;
  /** Queries and failed queries the router SDK reported for the shard within the window. */
  requests: number;
  errors: number;
  /** Its newest report (null: the SDK never reported). */
  reportedAt: Date | null;
}

export interface MeasuredFacts {
  now: Date;
  /** cdc.lag_ms, oldest first, from at least one sample gap before the longest window. */
  forwardLag: Sample[];
  /** cdc.reverse_lag_ms (shards → legacy), likewise. */
  reverseLag: Sample[];
  /** The data movement is running or paused: forward CDC should be streaming. */
  forwardExpected: boolean;
  /** Tenants a shard owns (the routing map): reverse CDC carries their writes back to legacy. */
  onShard: ReadonlySet<string>;
  parity: {
    /** The newest complete full check, and the newest complete check of any kind. */
    lastFullAt: Date | null;
    lastCheckAt: Date | null;
    /** Open confirmed mismatches per tenant. */
    openByTenant: ReadonlyMap<string, number>;
    /** Tenants the newest full check could not verify (a shard down, a statement timeout). */
    unverifiedTenants: ReadonlySet<string>;
  };
  /** When the fences were installed (null: not yet, and stray writes cannot be seen). */
  fencesInstalledAt: Date | null;
  /** Stray writes observed since the longest window's start. */
  strayWrites: { at: Date; database: string; tenant: string | null; count: number }[];
  /**
   * Refusals (frozen, not the owner, fence changing) of a tenant while it was being cut over, not
   * in strayWrites: a router's write in flight when the fence closed, retried on the new owner.
   */
  strayWritesDuringCutovers?: number;
  shards: ShardReachability[];
  sdk: SdkErrorCounts[];
  /** Breaker trips recorded since the longest window's start (engine events of source "breaker"). */
  trips: { at: Date; message: string }[];
}

/** What a cohort's gates need beyond the plan's facts. */
export interface CohortFacts {
  ordinal: number;
  /** Every tenant in the cohort, nested (members whose ordinal is at most this one). */
  tenants: readonly string[];
  /** The cohort before it, null for the first. */
  previous: {
    ordinal: number;
    tenants: number;
    /** Its tenants a shard owns now. */
    onShard: number;
    /** When the last of them was flipped to its shard (null: none yet). */
    lastFlipAt: Date | null;
  } | null;
  /** When this cohort's promotion began (null: not yet); stray writes are counted since. */
  promotionStartedAt?: Date | null;
}
