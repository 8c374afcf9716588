// Decides each change's target(s) and turns it into the row-image statements each target applies.
//
// The decision itself is a Route, read from the versioned routing map: which targets hold a row of
// a table for a tenant. Forward CDC (legacy → shards) routes by placement: a sharded table's row
// to its tenant's shard, a reference table's row to every shard. Reverse CDC (a shard → legacy)
// routes by the tenants it carries: their rows to legacy, everything else nowhere — reference
// tables are never sent back. Ownership as the source's fence says it, changed at each fence message
// in the stream, is one more Route (ownership-route.ts).
//
// What the router adds to a Route, the same in every direction:
// - commit order is kept within each target; a transaction a target already holds (by its
//   replication origin) is not sent to it again;
// - a transaction every target holds is skipped before the route sees any of it;
// - a transactional logical message is handed to the route at its place in the transaction; when
//   the route asks for it, every target that does not hold the transaction gets a drain marker
//   (drain-mark.ts): the target transaction is stamped with it even if it carries nothing else
//   there, and records, in a row it commits or loses with its stamp, that the target holds it;
// - a row whose tenant or key changed is deleted where its old image was;
// - an update without an old image of a table whose key lacks the tenant may have moved the row
//   between tenants: it is deleted from every other target that may hold it;
// - a TRUNCATE empties the table for every tenant, so it goes to every target that may hold rows
//   of the table — unless the composition refuses it (truncateRefusal: the forward stream while
//   the table's backfill is unfinished, as a chunk read before it would bring rows back);
// - relations are checked against the schema snapshot once per runner, tables that were not in it
//   stop the stream: CdcStopError says what happened and what to do.
import type { SourceSchema, TableInfo } from "../analysis/introspect";
import type { Placement } from "../router/placement";
import { CdcStopError, type Statement, type TableApplier, tableApplier } from "./apply";
import { drainMarker } from "./drain-mark";
import type { Change, Relation, Tuple } from "./pgoutput";
import { UNCHANGED_TOAST } from "./pgoutput";

/** Which targets hold which rows: one version of the routing map, for one direction. */
export interface Route {
  /** The routing map's version this route was read from (it only grows). */
  readonly version: number;
  /** Targets are ordinals 0 … targetCount − 1 (the composition's appliers, in order). */
  readonly targetCount: number;
  /** The targets of a row of `table` owned by `tenant` (its shard-key value as text; null for a reference table's row). */
  targetsOf(table: TableInfo, tenant: string | null): readonly number[];
  /**
   * Every target that may hold rows of `table`, for a change that names no tenant (a TRUNCATE, a
   * row whose image lacks the tenant). Throws CdcStopError when this route cannot carry it.
   */
  everyTargetOf(table: TableInfo, change: string): readonly number[];
  /**
   * Called before each transaction's changes are routed, in commit order, for transactions that
   * at least one target does not hold yet (one every target holds is skipped before the route sees
   * it: ownership decided by a later state must never judge what the targets already have).
   */
  beginTransaction?(tx: RoutedTransaction): void;
  /**
   * A transactional logical message, at its place among the transaction's changes (so a route
   * that follows ownership changes it exactly there). True: every target that does not hold the
   * transaction is stamped with it even if it carries nothing for that target (a drain marker).
   */
  onMessage?(message: { prefix: string; content: Buffer; lsn: bigint }): boolean;
}

/** A source transaction as the router meets it. */
export interface RoutedTransaction {
  xid: string;
  /** Position of its commit record (0n when the caller did not say). */
  commitLsn: bigint;
  /** End of its commit record: what the targets' origins hold it by. */
  endLsn: bigint;
  /** Per target ordinal: the target already holds this transaction (its origin is at or past endLsn). */
  held: readonly boolean[];
}

/** Forward CDC: legacy → the shards, by the plan's placement. */
export function placementRoute(placement: Placement, version = 1): Route {
  const all = Array.from({ length: placement.shardCount }, (_, i) => i);
  const one = all.map((i) => [i]);
  return {
    version,
    targetCount: placement.shardCount,
    targetsOf: (table, tenant) =>
      table.kind === "reference" || tenant === null ? all : (one[placement.shardFor(tenant)] ?? all),
    everyTargetOf: () => all,
  };
}

/**
 * Reverse CDC: one shard → legacy (target 0), for the tenants it carries (those cut over to the
 * shard). Reference tables are legacy's to write: never sent back.
 */
export function carriedTenantsRoute(tenants: Iterable<string>, version = 1): Route {
  const carried = new Set(tenants);
  const legacy = [0];
  const none: readonly number[] = [];
  return {
    version,
    targetCount: 1,
    targetsOf: (table, tenant) =>
      table.kind === "sharded" && tenant !== null && carried.has(tenant) ? legacy : none,
    everyTargetOf(table, change) {
      if (table.kind === "reference") return none;
      throw new CdcStopError(
        `${change} on ${table.qualified} on the shard names no tenant, so the reverse stream cannot tell whether it belongs to a tenant cut over to the shard. ` +
          "Legacy was not changed. Set REPLICA IDENTITY FULL on the table (or put the tenant key in its primary key), then restart the stream.",
      );
    },
  };
}

/** How the router names a TRUNCATE to Route.everyTargetOf (a route may refuse it). */
export const TRUNCATE_CHANGE = "A TRUNCATE";

type Push = (targets: readonly number[], statement: Statement, applier: TableApplier, keyRow: Tuple) => void;

export class ChangeRouter {
  private readonly appliers = new Map<string, TableApplier>();
  /** Relation ids whose columns were checked against the schema snapshot. */
  private readonly verified = new Set<number>();
  /** (table, tenant) pairs changed since the last drain: the parity "recent" pass checks them. */
  private readonly touchedPairs = new Map<string, { table: string; tenant: string }>();

  constructor(
    private readonly schema: SourceSchema,
    private readonly routeMap: Route,
    /** How messages name the two sides. */
    private readonly names: { source: string; targets: string } = { source: "legacy", targets: "shards" },
  ) {
    for (const table of schema.tables)
      this.appliers.set(`${table.schema}.${table.name}`, tableApplier(table));
  }

  /** The routing map's version this router decides by. */
  get routeVersion(): number {
    return this.routeMap.version;
  }

  drainTouched(): { table: string; tenant: string }[] {
    const pairs = [...this.touchedPairs.values()];
    this.touchedPairs.clear();
    return pairs;
  }

  /**
   * Why a TRUNCATE of `relation` (TableInfo.qualified) cannot be replayed now, or null when it can
   * (the composition sets it: see the opening comment).
   */
  truncateRefusal: (relation: string) => string | null = () => null;

  private applierFor(schema: string, table: string): TableApplier {
    const applier = this.appliers.get(`${schema}.${table}`);
    if (!applier) {
      throw new CdcStopError(
        `A change arrived for ${schema}.${table}, which was not in the source schema when the migration started. ` +
          "Tables added during a migration are not migrated: cancel the data movement and start it again to include it.",
      );
    }
    return applier;
  }

  /**
   * The stream reports a relation change only within one session; after a restart the first
   * Relation message is simply "the current definition". So every relation is checked against the
   * snapshot taken at start, once per runner: a column added while no stream ran must stop CDC too,
   * not have its values silently dropped.
   */
  private checkRelation(relation: Relation, applier: TableApplier): void {
    if (this.verified.has(relation.relationId)) return;
    const expected = applier.columns.map((c) => c.name).join(",");
    const actual = relation.columns.map((c) => c.name).join(",");
    if (expected !== actual) {
      throw new CdcStopError(
        `The schema of ${relation.schema}.${relation.table} changed on ${this.names.source} during the migration (columns now: ${actual}; at start: ${expected}). ` +
          `The change was not applied to the ${this.names.targets}. Apply the same change to every shard, then cancel and restart the data movement.`,
      );
    }
    this.verified.add(relation.relationId);
  }

  private targetsOf(applier: TableApplier, row: Tuple | null, change: string): readonly number[] {
    const table = applier.table;
    if (table.kind === "reference") return this.routeMap.targetsOf(table, null);
    const key = row?.[this.schema.shardKeyColumn];
    if (key === undefined || key === UNCHANGED_TOAST) return this.routeMap.everyTargetOf(table, change);
    if (key === null) {
      throw new CdcStopError(
        `${table.qualified} received a row with a NULL ${this.schema.shardKeyColumn}; it cannot be placed on a shard.`,
      );
    }
    this.touchedPairs.set(`${table.qualified}\u0000${key}`, { table: table.qualified, tenant: key });
    return this.routeMap.targetsOf(table, key);
  }

  /**
   * Turns transactions (in commit order) into per-target statement lists (in the same order). `xid`
   * is each transaction's full source xid8 (text); statements carry it with the key they write.
   */
  route(
    transactions: readonly { xid: string; commitLsn?: bigint; endLsn?: bigint; changes: readonly Change[] }[],
    /**
     * Per target, the source position its replication origin already holds: a transaction ending
     * at or before it is on that target and is not sent there again (apply-origin.ts).
     */
    appliedUpTo?: readonly bigint[],
  ): Statement[][] {
    const out: Statement[][] = Array.from({ length: this.routeMap.targetCount }, () => []);
    let xid = "";
    let endLsn = 0n;
    // Every statement is a fresh object from its applier, so it takes its `touches` in place (this
    // runs per change on the event loop that receives the stream: no copies).
    const push: Push = (targets, statement, applier, keyRow) => {
      statement.touches = { relation: applier.table.qualified, key: applier.keyOf(keyRow), xid };
      for (const t of targets) {
        if (appliedUpTo && endLsn <= (appliedUpTo[t] ?? 0n)) continue;
        out[t]?.push(statement);
      }
    };
    const targetCount = this.routeMap.targetCount;
    for (const tx of transactions) {
      xid = tx.xid;
      endLsn = tx.endLsn ?? 0n;
      // The origin filter comes first: a transaction every target holds is skipped whole, before
      // the route (which may follow ownership read at a later position) decides anything about it.
      const held = Array.from(
        { length: targetCount },
        (_, t) => appliedUpTo !== undefined && endLsn <= (appliedUpTo[t] ?? 0n),
      );
      if (targetCount > 0 && held.every(Boolean)) continue;
      this.routeMap.beginTransaction?.({ xid, commitLsn: tx.commitLsn ?? 0n, endLsn, held });
      let marker = false;
      for (const change of tx.changes) {
        if (change.kind === "message") {
          if (this.routeMap.onMessage?.(change)) marker = true;
          continue;
        }
        if (change.kind !== "truncate") {
          this.routeChange(change, push);
          continue;
        }
        // The table is empty for every tenant: it is emptied on every target, in commit order.
        const { statement, targets } = this.truncate(change);
        for (const t of targets) {
          if (appliedUpTo && endLsn <= (appliedUpTo[t] ?? 0n)) continue;
          out[t]?.push(statement);
        }
      }
      // Every target that does not hold it is stamped with this transaction, rows or not, and
      // records it in a row of the same target transaction: the cutover waits for a quiet target's
      // origin to pass the fence change, and for that row, which only a commit leaves (drain.ts).
      // A target that holds it committed its marker when it applied it.
      if (marker) {
        for (const [t, statements] of out.entries()) if (!held[t]) statements.push(drainMarker(endLsn));
      }
    }
    return out;
  }

  private truncate(change: Extract<Change, { kind: "truncate" }>): {
    statement: Statement;
    targets: readonly number[];
  } {
    const tables = change.relations.map((r) => this.applierFor(r.schema, r.table).table);
    const names = change.relations.map((r) => `${r.schema}.${r.table}`).join(", ");
    for (const table of tables) {
      const refusal = this.truncateRefusal(table.qualified);
      if (refusal) {
        throw new CdcStopError(
          `TRUNCATE of ${names} on ${this.names.source} during the migration, and ${refusal}. The ${this.names.targets} were not truncated. ` +
            "Cancel the data movement, and start it again once the table is in the state you want.",
        );
      }
    }
    const targets = new Set(tables.flatMap((t) => this.routeMap.everyTargetOf(t, TRUNCATE_CHANGE)));
    return {
      statement: {
        text:
          `TRUNCATE ONLY ${tables.map((t) => t.qualified).join(", ")}` +
          `${change.restartIdentity ? " RESTART IDENTITY" : ""}${change.cascade ? " CASCADE" : ""}`,
        values: [],
      },
      targets: [...targets].sort((a, b) => a - b),
    };
  }

  private routeChange(change: Exclude<Change, { kind: "truncate" | "message" }>, push: Push): void {
    const a = this.applierFor(change.relation.schema, change.relation.table);
    this.checkRelation(change.relation, a);
    switch (change.kind) {
      case "insert":
        push(this.targetsOf(a, change.new, "An INSERT"), a.upsert(change.new), a, change.new);
        return;
      case "delete": {
        if (!a.hasKey(change.old.tuple)) {
          throw new CdcStopError(
            `A DELETE on ${a.table.qualified} arrived without its primary key (replica identity ${change.relation.replicaIdentity}). ` +
              "Set REPLICA IDENTITY DEFAULT (with a primary key) or FULL on the table and start the data movement again.",
          );
        }
        push(
          this.targetsOf(a, change.old.tuple, "A DELETE"),
          a.deleteByKey(change.old.tuple),
          a,
          change.old.tuple,
        );
        return;
      }
      case "update": {
        const targets = this.targetsOf(a, change.new, "An UPDATE");
        const oldKey = change.old?.tuple ?? null;
        if (
          !oldKey &&
          a.table.kind === "sharded" &&
          !a.table.primaryKey.includes(this.schema.shardKeyColumn)
        ) {
          // The tenant is not part of the key, and without an old image (REPLICA IDENTITY DEFAULT)
          // a change of tenant cannot be told from any other update: the row may have left another
          // target. Remove it from every other one (REPLICA IDENTITY FULL avoids these deletes).
          const elsewhere = this.routeMap
            .everyTargetOf(a.table, "An UPDATE without its old row")
            .filter((t) => !targets.includes(t));
          if (elsewhere.length) push(elsewhere, a.deleteByKey(change.new), a, change.new);
        }
        if (oldKey && a.hasKey(oldKey)) {
          const oldTargets = this.targetsOf(a, oldKey, "An UPDATE");
          const keyChanged = a.table.primaryKey.some((c) => oldKey[c] !== change.new[c]);
          // The row left its old key or its tenant's target: remove the old image there first.
          const movedAway = oldTargets.filter((t) => !targets.includes(t));
          if (keyChanged) push(oldTargets, a.deleteByKey(oldKey), a, oldKey);
          else if (movedAway.length) push(movedAway, a.deleteByKey(oldKey), a, oldKey);
        }
        const partial = Object.values(change.new).some((v) => v === UNCHANGED_TOAST);
        const statement: Statement = partial
          ? {
              ...a.partialUpdate(change.new, change.new),
              reread: { select: a.selectByKey(change.new), upsert: (row) => a.upsert(row) },
            }
          : a.upsert(change.new);
        push(targets, statement, a, change.new);
        return;
      }
    }
  }
}
