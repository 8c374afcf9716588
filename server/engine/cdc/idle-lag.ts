// The lag of a stream that has nothing to apply (issue 12: a quiet legacy). Lag samples are written
// when batches are applied, so a source without writes produced none, and after a while the
// cutover's pre-check read "no recent sample" as "the stream is not running" and refused. On each
// idle tick of the stream (its reader's idle timeout) this decides, from positions rather than the
// clock, whether the stream is caught up: it is when it has received the source's WAL up to the
// source's current insert position. Then its lag is 0. Otherwise nothing is claimed (null): either
// changes are on their way and the next applied batch samples their lag, or the stream is stuck and
// the samples stop, which is what the pre-check must see.
import type pg from "pg";
import { parseLsn } from "./slot";

const WAL_PAGE_BYTES = 8192n;
/** A long WAL page header (the first page of a segment); a short one is 24 bytes. */
const WAL_PAGE_HEADER_MAX_BYTES = 40n;

/**
 * Pure: whether a stream that received the source's WAL up to `received` holds everything written
 * before `insert` (the source's pg_current_wal_insert_lsn()). The insert position may sit just past
 * the header of a page the last record ended before, where no record can be: that gap is no lag.
 */
export function caughtUp(received: bigint, insert: bigint): boolean {
  if (received >= insert) return true;
  return (
    received % WAL_PAGE_BYTES === 0n &&
    insert - received <= WAL_PAGE_HEADER_MAX_BYTES &&
    insert % WAL_PAGE_BYTES <= WAL_PAGE_HEADER_MAX_BYTES
  );
}

/** 0 when the stream that received up to `received` is caught up with `source`, else null (see above). */
export async function idleLagMs(source: Pick<pg.Pool, "query">, received: bigint): Promise<number | null> {
  const { rows } = await source.query<{ lsn: string }>("select pg_current_wal_insert_lsn()::text as lsn");
  const insert = parseLsn(rows[0]?.lsn ?? "0/0");
  return caughtUp(received, insert) ? 0 : null;
}
