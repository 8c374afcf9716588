// Who owns each tenant, as the SOURCE's fence says it at each position of the stream — the Route
// both replication directions decide by once tenants are cut over (docs/cutover.md).
//
// Why by message and not by clock or by the control plane: a fence change is a transactional
// logical message in the source's WAL, written in the same transaction as the fence rows
// (syncFence, FENCE_MESSAGE_PREFIX). A stream meets it exactly between the last transaction that
// could write under the old ownership and the first under the new one, so "did this change happen
// before or after the flip?" is answered by log position, never by timing.
//
// State:
// - Initial: the source's tenant_fence read when the stream opens. That is the CURRENT state, newer
//   than the replayed part of the stream — safe because the router skips every transaction the
//   targets already hold before the route sees it (change-router.ts), and because the cutover
//   drains each target past the freeze position before it flips (every write of the tenant on the
//   old owner is below it; between freeze and flip the fence refuses the tenant's writes).
// - Then each fence message, at its place in the transaction stream, sets the routes it names.
//   A message of another plan (a fence installed again for a later plan) is ignored.
//
// Directions:
// - forward (source legacy → shards): a sharded table's row of a tenant legacy's fence says is not
//   legacy's is dropped and reported as a stray write (reason applied_after_flip, named by its
//   commit LSN): only a session that bypasses the fence's triggers can have written it, and the
//   tenant's owner holds the truth now. Everything else routes by placement, as before.
// - reverse (source a shard → legacy, target 0): a tenant's rows are carried iff the shard's fence
//   says the shard owns it. Reference tables never.
import type pg from "pg";
import type { TableInfo } from "../analysis/introspect";
import type { Placement } from "../router/placement";
import { FENCE_MESSAGE_PREFIX, LEGACY_OWNER_KEY, readTenantFenceSql } from "../routing/fence-sql";
import { CdcStopError } from "./apply";
import { placementRoute, type Route, type RoutedTransaction, TRUNCATE_CHANGE } from "./change-router";
import { formatLsn } from "./slot";

type Queryable = Pick<pg.ClientBase, "query">;

export interface TenantOwnership {
  /** LEGACY_OWNER_KEY or a shard's database id. */
  ownerKey: string;
  frozen: boolean;
}

/** A source's fence as a stream needs it: which database it is, and its tenants' owners. */
export interface FenceOwnership {
  planId: string;
  /** The source's own owner key (LEGACY_OWNER_KEY on legacy, the shard's database id on a shard). */
  selfKey: string | null;
  /** Tenants with a row in the fence; a tenant without one is legacy's. */
  owners: Map<string, TenantOwnership>;
}

/** The content of a fence message (emitFenceMessageSql writes it). */
export interface FenceMessage {
  planId: string;
  version: number;
  routes: { tenantKey: string; ownerKey: string; frozen: boolean }[];
}

/**
 * Reads `source`'s fence for `planId`. No fence installed, or one of another plan: no rows (every
 * tenant legacy's) and, unless `selfKey` is given, no self (a shard that owns nothing).
 */
export async function readFenceOwnership(
  source: Queryable,
  planId: string,
  selfKey: string | null = null,
): Promise<FenceOwnership> {
  const empty: FenceOwnership = { planId, selfKey, owners: new Map() };
  let rows: {
    plan_id: string;
    self_key: string;
    tenant_key: string | null;
    owner_key: string | null;
    frozen: boolean | null;
  }[];
  try {
    ({ rows } = await source.query(readTenantFenceSql()));
  } catch (error) {
    if ((error as { code?: string }).code === "42P01") return empty; // no fence installed there
    throw error;
  }
  const first = rows[0];
  if (!first || first.plan_id !== planId) return empty;
  const owners = new Map<string, TenantOwnership>();
  for (const row of rows) {
    if (row.tenant_key === null || row.owner_key === null) continue;
    owners.set(row.tenant_key, { ownerKey: row.owner_key, frozen: row.frozen === true });
  }
  return { planId, selfKey: selfKey ?? first.self_key, owners };
}

export function parseFenceMessage(content: Buffer, lsn: bigint): FenceMessage {
  try {
    const parsed = JSON.parse(content.toString("utf8")) as FenceMessage;
    if (typeof parsed.planId !== "string" || !Array.isArray(parsed.routes)) throw new Error("missing fields");
    return parsed;
  } catch (error) {
    throw new CdcStopError(
      `A ${FENCE_MESSAGE_PREFIX} message at ${formatLsn(lsn)} could not be read (${(error as Error).message}); ` +
        "only the fence (syncFence) writes these. Nothing after it was applied: find what wrote it, then restart the stream.",
    );
  }
}

/** A row the forward stream dropped: legacy no longer owned its tenant when it was written. */
export interface StrayChange {
  tenantKey: string;
  /** TableInfo.qualified of the (first) table written. */
  table: string;
  /** The source transaction's commit record position: the stray write's ticket. */
  commitLsn: bigint;
  /** Rows of this tenant the transaction wrote. */
  rows: number;
}

/** The ownership state, changed at each fence message the router meets. */
abstract class OwnershipState {
  /** Route.version: the highest fence version among the messages this stream met (0 before any). */
  version = 0;
  protected current: RoutedTransaction | null = null;

  constructor(protected readonly fence: FenceOwnership) {}

  ownerOf(tenant: string): TenantOwnership {
    return this.fence.owners.get(tenant) ?? { ownerKey: LEGACY_OWNER_KEY, frozen: false };
  }

  /** Whether the source owns `tenant` (at the position the stream has reached). */
  ownedHere(tenant: string): boolean {
    return this.fence.selfKey !== null && this.ownerOf(tenant).ownerKey === this.fence.selfKey;
  }

  /** Tenants the fence says another database than the source owns. */
  protected ownedElsewhere(): string[] {
    return [...this.fence.owners.entries()]
      .filter(([, o]) => o.ownerKey !== this.fence.selfKey)
      .map(([tenant]) => tenant);
  }

  beginTransaction(tx: RoutedTransaction): void {
    this.current = tx;
  }

  onMessage(message: { prefix: string; content: Buffer; lsn: bigint }): boolean {
    if (message.prefix !== FENCE_MESSAGE_PREFIX) return false;
    const change = parseFenceMessage(message.content, message.lsn);
    if (change.planId !== this.fence.planId) return false;
    for (const r of change.routes) {
      this.fence.owners.set(r.tenantKey, { ownerKey: r.ownerKey, frozen: r.frozen === true });
    }
    if (Number(change.version) > this.version) this.version = Number(change.version);
    // A drain marker on every target: the cutover waits for this transaction's position there.
    return true;
  }
}

/** Forward CDC (legacy → shards): placement, minus the rows of tenants legacy no longer owns. */
export class ForwardOwnershipRoute extends OwnershipState implements Route {
  private readonly placement: Route;
  private strays = new Map<string, StrayChange>();

  constructor(placement: Placement, fence: FenceOwnership) {
    super({ ...fence, selfKey: LEGACY_OWNER_KEY, owners: new Map(fence.owners) });
    this.placement = placementRoute(placement);
  }

  get targetCount(): number {
    return this.placement.targetCount;
  }

  targetsOf(table: TableInfo, tenant: string | null): readonly number[] {
    const targets = this.placement.targetsOf(table, tenant);
    if (table.kind !== "sharded" || tenant === null || this.ownedHere(tenant)) return targets;
    // Written on legacy after legacy gave the tenant away: only a writer that bypassed the fence's
    // triggers gets here. Its owner holds the truth; the row is dropped and reported — unless the
    // target it would have reached already holds this transaction (a replay: judged back then).
    const tx = this.current;
    if (tx && !targets.some((t) => tx.held[t])) {
      const key = `${tx.commitLsn}\u0000${tenant}`;
      const known = this.strays.get(key);
      if (known) known.rows++;
      else
        this.strays.set(key, { tenantKey: tenant, table: table.qualified, commitLsn: tx.commitLsn, rows: 1 });
    }
    return [];
  }

  everyTargetOf(table: TableInfo, change: string): readonly number[] {
    if (change === TRUNCATE_CHANGE && table.kind === "sharded") {
      const elsewhere = this.ownedElsewhere();
      if (elsewhere.length > 0) {
        throw new CdcStopError(
          `A TRUNCATE of ${table.qualified} on legacy, while ${elsewhere.length === 1 ? `tenant ${elsewhere[0]} is` : `${elsewhere.length} tenants are`} owned by a shard: ` +
            "replaying it would delete rows legacy no longer owns. The shards were not truncated. " +
            "Delete the rows you meant to remove per tenant instead, then restart the stream (cancel the data movement if the TRUNCATE must stand).",
        );
      }
    }
    return this.placement.everyTargetOf(table, change);
  }

  /** The stray writes met since the last call, for the store (recordCdcStrayWrites). */
  takeStrays(): StrayChange[] {
    const strays = [...this.strays.values()];
    this.strays = new Map();
    return strays;
  }
}

/** Reverse CDC (a shard → legacy, target 0): the tenants the shard's fence says the shard owns. */
export class ReverseOwnershipRoute extends OwnershipState implements Route {
  readonly targetCount = 1;

  constructor(fence: FenceOwnership) {
    super({ ...fence, owners: new Map(fence.owners) });
  }

  targetsOf(table: TableInfo, tenant: string | null): readonly number[] {
    return table.kind === "sharded" && tenant !== null && this.ownedHere(tenant) ? [0] : [];
  }

  everyTargetOf(table: TableInfo, change: string): readonly number[] {
    if (table.kind === "reference" || !this.ownsAny()) return [];
    throw new CdcStopError(
      `${change} on ${table.qualified} on the shard names no tenant, so the reverse stream cannot tell whether it belongs to a tenant the shard owns. ` +
        "Legacy was not changed. Set REPLICA IDENTITY FULL on the table (or put the tenant key in its primary key), then restart the stream.",
    );
  }

  private ownsAny(): boolean {
    for (const o of this.fence.owners.values()) if (o.ownerKey === this.fence.selfKey) return true;
    return false;
  }
}
