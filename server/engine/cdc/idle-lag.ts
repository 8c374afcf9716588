// The lag of a stream that has nothing to apply (issue 12: a quiet legacy). Lag samples are written
// when batches are applied, so a source without writes produced none, and after a while the
// cutover's pre-check read "no recent sample" as "the stream is not running" and refused. On each
// idle tick of the stream (its reader's idle timeout, or a keepalive's empty batch) this judges the
// lag from WAL positions: 0 when the stream has received the source's WAL up to its current insert
// position, else how long ago the source's WAL reached what the stream received (IdleLag).
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

/** Readings of the source's insert position kept (one an idle tick: ten minutes of a stream behind). */
const MARKS_KEPT = 600;

/**
 * A stream's lag on its idle ticks. Caught up: 0. Otherwise, when the source's WAL reached what the
 * stream has received: between two earlier readings of the source's insert position, in proportion
 * to the bytes (WAL is written at about a steady rate over a second); the lag is how long before the
 * stream received it that was. On a legacy server whose other databases write all the time the
 * insert position is always past what the stream received, and "caught up" alone never held: no
 * sample, and every cutover's pre-check refused (breaker-races.test.ts, on the shared test server).
 * A stream that receives nothing gets no sample (null): stuck is what the pre-check must see.
 */
export class IdleLag {
  private readonly marks: { lsn: bigint; at: number }[] = [];

  /**
   * Reads the source's insert position now, and judges the stream that had received `received` at
   * `receivedAt` (performance.now(): spans on the monotonic clock, so a step of the wall clock
   * neither hides a stuck stream's lag nor invents one; stepped back an hour, a stream 5 s behind
   * read as 0 on the wall clock).
   */
  async sample(source: Pick<pg.Pool, "query">, received: bigint, receivedAt: number): Promise<number | null> {
    // Taken before the query: everything written before `at` is at or below the position read.
    const at = performance.now();
    const { rows } = await source.query<{ lsn: string }>("select pg_current_wal_insert_lsn()::text as lsn");
    return this.judge(received, receivedAt, parseLsn(rows[0]?.lsn ?? "0/0"), at);
  }

  /** Pure but for the readings it keeps: the source's insert position was `insert` at `at`. */
  judge(received: bigint, receivedAt: number, insert: bigint, at: number): number | null {
    const marks = this.marks;
    const last = marks[marks.length - 1];
    if (!last || insert > last.lsn) marks.push({ lsn: insert, at });
    if (marks.length > MARKS_KEPT) marks.splice(0, marks.length - MARKS_KEPT);
    if (caughtUp(received, insert)) return 0;
    // The newest reading at or below what the stream received, and the one after it.
    let below = -1;
    for (let i = marks.length - 1; i >= 0; i--) {
      if ((marks[i] as { lsn: bigint }).lsn <= received) {
        below = i;
        break;
      }
    }
    if (below < 0) return null;
    marks.splice(0, below); // the stream only moves on: older readings are of no more use
    const from = marks[0] as { lsn: bigint; at: number };
    const to = marks[1];
    if (!to) return null;
    const share = Number(received - from.lsn) / Number(to.lsn - from.lsn);
    const reachedAt = from.at + share * (to.at - from.at);
    return Math.max(0, Math.round(receivedAt - reachedAt));
  }
}
