// The drain marker's row: a target's COMMITTED record that it holds a fence change, which the
// cutover's drain reads together with the target's origin (drain.ts).
//
// Why: the origin alone can overstate what a target holds. PostgreSQL advances it on a stamped
// ABORT too, and a COMMIT can fail after the stamp ran (origin-settlement.ts): until the settlement
// moves it back, the origin sits at the aborted batch's stamp with none of its rows. The settlement
// is pending in the memory of the process (and thread) that applied; the drain runs in another
// thread or another worker process and cannot see it. A batch that carried the fence change (or
// anything at or past the freeze position) then looked drained, and the cutover flipped the tenant
// while its last writes were missing on the new owner (break-drain-aborted-stamp.test.ts). A row
// written in the same apply transaction as the marker exists only if that transaction committed:
// an aborted one leaves none, whatever its abort did to the origin.
//
// Invariants:
// - The marker (the fence change's transaction, pushed to every target that does not hold it:
//   change-router.ts) upserts the row of the session's origin (APPLY_ORIGIN_SETTING, set when the
//   session binds its origin) with the fence transaction's end position, in the apply transaction
//   that carries it: committed with its rows and its stamp, or not at all. The row only grows
//   (greatest): a marker is only ever re-applied after the settlement moved the origin back past an
//   abort, which left no row.
// - A committed row at R means the target committed every source transaction up to R: an apply
//   session applies in commit order and ends at its first failed stamped COMMIT, and the next one
//   opens only once that failure is settled (TargetApplier.open). The origin's stamp of the row's
//   transaction is at least R.
// - A transaction at or below the origin is skipped, marker included: its row was committed with it
//   (an origin that got past it by an unsettled abort is settled before any session applies again).
// - The marker still gives its transaction an xid (pg_current_xact_id()), with or without a row:
//   PostgreSQL writes no commit record, and records no origin progress, for a transaction without.
// - The table lives in the fence schema of each target (legacy and every shard), made with the
//   fence (installFenceSchemaSql) and, for fences installed before it existed or targets without a
//   fence, by every apply session as it opens (ensureDrainMarkSql). Its rows are deleted with their
//   origins when a movement ends (dropSlotOrigins); dropping the fence drops the table.
import pg from "pg";
import { DRAIN_MARK_TABLE, drainMarkTableSql, FENCE_SCHEMA } from "../routing/fence-sql";
import type { Statement } from "./apply";
import { APPLY_ORIGIN_SETTING } from "./apply-origin";
import type { SqlStatement } from "./slot";
import { formatLsn } from "./slot";

/**
 * Makes the table unless it exists, for an apply session opening on its target. Only when missing:
 * the common open takes no lock; two sessions making it at once are not an error.
 */
export function ensureDrainMarkSql(): string {
  return `do $ensure$ begin
  if to_regclass(${pg.escapeLiteral(DRAIN_MARK_TABLE)}) is null then
    create schema if not exists ${FENCE_SCHEMA};
    ${drainMarkTableSql()};
  end if;
exception when duplicate_table or duplicate_schema or unique_violation then null;
end $ensure$`;
}

export const DRAIN_MARKER_NAME = "shardshift_drain_mark";

const DRAIN_MARKER_TEXT = `with mark as (
  insert into ${DRAIN_MARK_TABLE} as m (origin, lsn)
  select s.origin, $1::pg_lsn
    from (select nullif(current_setting('${APPLY_ORIGIN_SETTING}', true), '') as origin) s
   where s.origin is not null
  on conflict (origin) do update set lsn = greatest(m.lsn, excluded.lsn)
)
select pg_current_xact_id()`;

/**
 * The drain marker of the source transaction ending at `endLsn` (the fence change's): its row, in
 * the apply transaction that carries it. A fresh object per call (the router may set its fields).
 */
export function drainMarker(endLsn: bigint): Statement {
  return { name: DRAIN_MARKER_NAME, text: DRAIN_MARKER_TEXT, values: [formatLsn(endLsn)] };
}

export function isDrainMarker(statement: Pick<Statement, "name">): boolean {
  return statement.name === DRAIN_MARKER_NAME;
}

/**
 * The origin's flushed position and its committed drain mark, in ONE statement: the mark is read in
 * the statement's snapshot, taken before the origin is read and flushed. A mark visible there was
 * committed by a transaction that had already advanced the origin (PostgreSQL advances it before the
 * commit becomes visible), so the flush that answers covers that commit: the mark is durable too.
 */
export function drainProgressSql(origin: string): SqlStatement {
  return {
    text: `select coalesce(pg_replication_origin_progress($1, true), '0/0')::text as lsn,
      (select m.lsn::text from ${DRAIN_MARK_TABLE} m where m.origin = $1) as marked`,
    values: [origin],
  };
}

/** The marks of every origin of a slot (any target) on one database, deleted with those origins. */
export function deleteDrainMarksSql(slot: string): SqlStatement {
  return {
    text: `delete from ${DRAIN_MARK_TABLE} where left(origin, length($1)) = $1`,
    values: [`shardshift_${slot}_`],
  };
}
