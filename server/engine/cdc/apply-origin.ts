// Replication origins on a target: the target's own durable record of how far it applied a source.
//
// Why: apply commits asynchronously (synchronous_commit = off: the flush leaves the lag), so a
// target that crashes loses its last commits — and its WAL position after a restart says nothing
// about which source transactions those were. An origin does: every apply transaction is stamped
// (pg_replication_origin_xact_setup) with the end LSN of the last source transaction it contains,
// and the stamp is written in the commit record itself. After a crash the origin's position is
// exactly the last stamped commit that survived.
//
// Invariants:
// - One origin per source slot → target pair. Origins are per server (not per database), so the
//   name carries the target's ordinal (two shards may be two databases of one server) and the
//   slot's consistent point (a plan's slot name is reused by a later movement: its origins must
//   start from nothing, not from an old movement's positions).
// - A source transaction whose end LSN is at or below the target's origin position is already on
//   that target: it is skipped there (exactly once), never applied again.
// - pg_replication_origin_progress(name, true) flushes the target's WAL up to the origin's last
//   commit before answering: what it returns is durable. Only that may be confirmed to the slot.
// - Transactions written in a session that carries an origin are marked with it in the WAL, so a
//   stream started with origin 'none' on that server does not send them back (loop safety for
//   reverse CDC).
// - The stamp travels with the COMMIT, in one message: PostgreSQL advances the origin when a
//   stamped transaction aborts too, so a stamp without its commit could skip a batch for good.
// - A COMMIT that fails after the stamp ran (nothing orders it away) is settled before the origin
//   is used again: the origin moved back to where it was if that transaction aborted
//   (origin-settlement.ts).
import pg from "pg";
import type { SqlStatement } from "./slot";
import { formatLsn } from "./slot";

/** The origin of one source slot → target pair. */
export function applyOriginName(slot: string, slotLsn: bigint, targetOrdinal: number): string {
  return `shardshift_${slot}_${slotLsn.toString(16)}_t${targetOrdinal}`;
}

/** Whether a transaction's origin is one of our appliers' (any slot, any target). */
export function isApplyOrigin(origin: string): boolean {
  return origin.startsWith("shardshift_");
}

/**
 * The session setting naming the origin an apply session carries: PostgreSQL has no function that
 * says which origin a session is bound to, and the drain marker records its row under it
 * (drain-mark.ts).
 */
export const APPLY_ORIGIN_SETTING = "shardshift.apply_origin";

/**
 * Creates the origin unless it exists, binds it to this session (one session per origin), and names
 * it in APPLY_ORIGIN_SETTING for the session's statements.
 */
export function originSessionSetupSql(origin: string): string {
  const name = pg.escapeLiteral(origin);
  return (
    `select pg_replication_origin_create(${name}) where pg_replication_origin_oid(${name}) is null; ` +
    `select pg_replication_origin_session_setup(${name}); ` +
    `select set_config('${APPLY_ORIGIN_SETTING}', ${name}, false)`
  );
}

/** The origin's position, flushed to disk first (so it survives a crash of the target). */
export function originProgressSql(origin: string): SqlStatement {
  return {
    text: "select coalesce(pg_replication_origin_progress($1, true), '0/0')::text as lsn",
    values: [origin],
  };
}

/**
 * The origin's position as `originProgressSql` reads it, and who this session is (pid and start, so a
 * later pid of another backend is never taken for it): the apply session's opening read. A stamped
 * transaction of this session that fails at COMMIT is settled from another session, which must find
 * this backend (origin-settlement.ts).
 */
export function originSessionProgressSql(origin: string): SqlStatement {
  return {
    text:
      "select coalesce(pg_replication_origin_progress($1, true), '0/0')::text as lsn, pg_backend_pid() as pid, " +
      "(select extract(epoch from backend_start)::text from pg_stat_activity where pid = pg_backend_pid()) as started",
    values: [origin],
  };
}

/** The stamp's column that carries the stamped transaction's xid (stamped-commit.ts watches it). */
export const STAMP_XID_COLUMN = "shardshift_stamp_xid";

/**
 * Stamps the current transaction with the source position it brings the target to. Literals, not
 * parameters: it rides in the same simple-protocol message as the COMMIT (apply.ts says why).
 */
export function originXactSetupSql(stampLsn: bigint, commitTimeIso: string): string {
  return `select pg_replication_origin_xact_setup('${formatLsn(stampLsn)}', ${pg.escapeLiteral(commitTimeIso)})`;
}

/**
 * The end of a stamped transaction, sent as ONE message: deferred constraint checks, the stamp,
 * COMMIT. `set constraints all immediate` runs every deferred check before the stamp: a deferred
 * constraint trigger that fires in an apply session (ENABLE ALWAYS or REPLICA) would otherwise fail
 * at COMMIT, after the stamp, and the aborted transaction would still move the origin past a batch
 * the target never committed (break-one-message-commit-fail.test.ts). Failing here, before the
 * stamp, abandons the rest of the message: the stamp never runs.
 *
 * pg_current_xact_id() gives the transaction an xid if its statements did not: PostgreSQL writes no
 * commit record, and records no origin progress, for a transaction without one. A batch that
 * changed nothing on the target (a replayed DELETE of a row already gone) would leave the origin
 * behind it, and the slot would wait for it until the next write to that target
 * (stamp-without-writes.test.ts). Its value is also the stamped transaction's name: a COMMIT can
 * still fail after the stamp (a wait in PreCommit_Notify ended by a terminate, a full NOTIFY queue),
 * and only knowing the xid lets the origin be moved back (stamped-commit.ts, origin-settlement.ts).
 */
export function stampAndCommitSql(stampLsn: bigint, commitTimeIso: string): string {
  return `set constraints all immediate; ${originXactSetupSql(stampLsn, commitTimeIso)} as shardshift_stamp, pg_current_xact_id()::text as ${STAMP_XID_COLUMN}; commit`;
}

/** Every origin of a slot (any target) on one server, dropped when its movement ends. */
export function dropSlotOriginsSql(slot: string): SqlStatement {
  return {
    text: `select pg_replication_origin_drop(roname) from pg_replication_origin
           where left(roname, length($1)) = $1`,
    values: [`shardshift_${slot}_`],
  };
}
