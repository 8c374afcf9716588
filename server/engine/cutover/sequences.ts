// Sequences at a cutover (docs/cutover.md step 6). Replication copies rows with the ids their
// owner generated, but not the owner's sequences: the new owner's sequence may stand far below
// the ids the tenant already has. Before the new owner takes the tenant's inserts, each sequence
// behind a sharded table's column (serial, bigserial or identity) is set past the old owner's
// value plus headroom. Never lowered: other tenants on the new owner may be using it.
import pg from "pg";
import type { TableInfo } from "../analysis/introspect";

/** Ids the old owner may still hand out (another tenant's insert there) before ours pass them. */
export const SEQUENCE_HEADROOM = 1_000_000n;

/**
 * What the pass BEFORE a freeze adds on top of the headroom, so that the pass inside the freeze
 * finds every sequence already at its floor and writes nothing: the old owner's values move on
 * between the two passes (other tenants' inserts), and a floor only just above the first pass's
 * setval had the in-freeze pass set every sequence again, each behind the per-sequence locks of
 * every other cutover doing the same (the first wave of 500 cutovers: 550 ms in this step).
 */
export const SEQUENCE_LEAD = 100_000n;

export interface SequenceBump {
  sequence: string;
  oldOwner: bigint;
  newOwner: bigint;
}

/** The sequences behind the sharded tables' columns (read once, before the freeze: catalog reads). */
export async function shardedSequences(
  pool: pg.Pool,
  tables: readonly Pick<TableInfo, "qualified" | "kind">[],
): Promise<string[]> {
  // Every table in ONE catalog read (one round trip, not one per table: this is on the breaker's
  // path from the click to the freeze).
  const names = tables.filter((t) => t.kind === "sharded").map((t) => t.qualified);
  if (names.length === 0) return [];
  const { rows } = await pool.query<{ seq: string }>(
    `select s.seq
     from unnest($1::text[]) with ordinality as t(name, n)
     join pg_attribute a on a.attrelid = t.name::regclass and a.attnum > 0 and not a.attisdropped
     cross join lateral (select pg_get_serial_sequence(t.name, a.attname) as seq) s
     where s.seq is not null
     order by t.n, a.attnum`,
    [names],
  );
  return rows.map((r) => r.seq);
}

/**
 * Ids a target may hand out between this module's read of a sequence and its setval (one statement
 * apart: microseconds). setval lands at least this far past the value it read — times the
 * sequence's CACHE, since each session's nextval takes a whole block of that many at once — so
 * inserts racing it on the target (other tenants' nextval) cannot be handed the same ids again.
 */
const RACE_MARGIN = 1_000n;

/** A name as pg_get_serial_sequence writes it: one or two identifiers, each plain or double-quoted. */
const SEQUENCE_NAME =
  /^(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)(?:\.(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*))?$/;

/**
 * SQL for a sequence's last value, read from the sequence itself. Not pg_sequence_last_value: that
 * is NULL while the sequence's next value has not been handed out (is_called false: after
 * `setval(s, n, false)`, ALTER SEQUENCE … RESTART, TRUNCATE … RESTART IDENTITY), and NULL read as 0
 * put a new owner's floor below ids its tenant already had, and set a target standing at millions
 * back down to the floor. last_value is then the next value itself: one more than was handed out,
 * which only errs high (a floor one higher; a target left where it is).
 */
function lastValueSql(seq: string): string {
  if (!SEQUENCE_NAME.test(seq)) throw new Error(`Not a sequence name: ${seq}`);
  return `(select last_value from ${seq})`;
}

/** The class of the advisory locks that serialize this module's setters of one sequence. */
const SEQUENCE_LOCK_CLASS = 7_363_401;

/**
 * Raises each sequence on `to` to at least its floor, in one round trip, and returns its value.
 *
 * setval is not a compare-and-set: `setval(s, greatest(last_value, floor))` read the value, then set
 * it, and in between other sessions' nextval may have handed out more ids; setting the value read
 * put the sequence back and handed those ids out again (duplicate keys in the tenant's inserts, seen
 * in the cutover ledger test with four cutovers at a time). So: a sequence already at its floor is
 * not touched at all; one below it is set past both its floor and what was read plus RACE_MARGIN;
 * and this module's setters of one sequence take turns (an advisory lock per sequence, taken in one
 * order), so a lower floor can never land after a higher one.
 */
async function raiseSequences(
  to: pg.Pool,
  floors: ReadonlyMap<string, bigint>,
): Promise<Map<string, bigint>> {
  if (floors.size === 0) return new Map();
  // Each sequence's last value is read where the list is used: in each statement, anew.
  const rows = [...floors].map(
    ([seq, floor]) => `(${pg.escapeLiteral(seq)}, ${floor.toString()}::bigint, ${lastValueSql(seq)})`,
  );
  const list = `(values ${rows.join(", ")}) as s(seq, floor, last)`;
  // One simple-protocol query, two statements, one implicit transaction: the locks (sorted, so two
  // setters never wait on each other in a cycle) are held until the sequences are set. Only the
  // sequences below their floor are locked: a sequence never goes down (nextval, and this module
  // only raises), so one read at or past its floor stays there, and the second statement leaves it.
  const results = (await to.query(
    `select pg_advisory_xact_lock(${SEQUENCE_LOCK_CLASS}, hashtext(s.seq)) from ${list}
     where s.last < s.floor order by hashtext(s.seq);
     select x.seq, (case when x.last < x.floor
                      then setval(x.seq::regclass, greatest(x.floor, x.last + ${RACE_MARGIN} * x.cache), true)
                      else x.last end)::text as v
     from (select s.seq, s.floor, s.last,
                  (select greatest(q.seqcache, 1) from pg_sequence q where q.seqrelid = s.seq::regclass) as cache
           from ${list} offset 0) x`,
  )) as unknown as pg.QueryResult<{ seq: string; v: string }>[];
  const set = results[1]?.rows ?? [];
  return new Map(set.map((r) => [r.seq, BigInt(r.v)]));
}

/** Each sequence's last value on `pool` (its next value while none was handed out), in one round trip. */
async function readSequences(pool: pg.Pool, sequences: readonly string[]): Promise<Map<string, bigint>> {
  const { rows } = await pool.query<{ seq: string; v: string | null }>(
    `select s.seq, s.v::text as v from (values ${sequences
      .map((seq) => `(${pg.escapeLiteral(seq)}, ${lastValueSql(seq)})`)
      .join(", ")}) as s(seq, v)`,
  );
  return new Map(rows.map((r) => [r.seq, BigInt(r.v ?? "0")]));
}

/**
 * Sets each sequence on `to` to at least its value on `from` + headroom, in one round trip to
 * each (this runs inside the freeze window). Returns what it set, for the attempt's step note.
 *
 * `known`: values `to` is known to be at or past (what an earlier pass returned). A sequence only
 * goes up (nextval, and this module only raises), so one whose floor is at or below what is known
 * needs nothing, and when none needs anything `to` is not asked at all: the pass inside the freeze,
 * after the pre-check's pass with its lead, is then one round trip to `from` instead of two
 * (it was the freeze's longest step in three of the bench's five slowest freezes).
 */
export async function advanceSequences(
  from: pg.Pool,
  to: pg.Pool,
  sequences: readonly string[],
  lead = 0n,
  known: ReadonlyMap<string, bigint> = new Map(),
): Promise<SequenceBump[]> {
  if (sequences.length === 0) return [];
  const old = await readSequences(from, sequences);
  const floors = new Map(
    [...old]
      .map(([seq, v]) => [seq, v + SEQUENCE_HEADROOM + lead] as const)
      .filter(([seq, floor]) => floor > (known.get(seq) ?? -1n)),
  );
  // Never lowered: the new owner's own value may already be higher (its tenants' inserts).
  const setBy = floors.size > 0 ? await raiseSequences(to, floors) : new Map<string, bigint>();
  return [...old].map(([seq, v]) => ({
    sequence: seq,
    oldOwner: v,
    newOwner: setBy.get(seq) ?? known.get(seq) ?? 0n,
  }));
}

/**
 * advanceSequences from several old owners into one new owner (the breaker's rollback: every
 * shard of the set into legacy): each owner's values read in parallel, the largest per sequence
 * set on `to` by ONE statement.
 */
export async function advanceSequencesFromAll(
  froms: readonly pg.Pool[],
  to: pg.Pool,
  sequences: readonly string[],
  lead = 0n,
): Promise<void> {
  if (sequences.length === 0 || froms.length === 0) return;
  const read = await Promise.all(froms.map((from) => readSequences(from, sequences)));
  const floors = new Map<string, bigint>();
  for (const values of read)
    for (const [seq, v] of values) {
      const floor = v + SEQUENCE_HEADROOM + lead;
      if (floor > (floors.get(seq) ?? 0n)) floors.set(seq, floor);
    }
  await raiseSequences(to, floors);
}

/**
 * When the old owner is DOWN (the breaker's rollback of an unreachable shard), its sequences cannot
 * be read: each sequence behind a sharded table's column on `pool` is set past the largest value
 * the table holds there (reverse replication brought the shard's rows with their ids) plus headroom.
 * Never lowered. One max() per column: an index scan for keys, and it runs before anything is frozen.
 */
export async function advanceSequencesPastRows(
  pool: pg.Pool,
  tables: readonly Pick<TableInfo, "qualified" | "kind">[],
): Promise<void> {
  const floors = new Map<string, bigint>();
  for (const table of tables.filter((t) => t.kind === "sharded")) {
    const { rows } = await pool.query<{ attname: string; seq: string }>(
      `select a.attname, pg_get_serial_sequence($1, a.attname) as seq
       from pg_attribute a
       where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped
         and pg_get_serial_sequence($1, a.attname) is not null`,
      [table.qualified],
    );
    for (const { attname, seq } of rows) {
      const max = await pool.query<{ v: string }>(
        `select coalesce(max(${pg.escapeIdentifier(attname)})::bigint, 0)::text as v from ${table.qualified}`,
      );
      const floor = BigInt(max.rows[0]?.v ?? "0") + SEQUENCE_HEADROOM;
      if (floor > (floors.get(seq) ?? 0n)) floors.set(seq, floor);
    }
  }
  await raiseSequences(pool, floors);
}
