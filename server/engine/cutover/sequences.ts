// Sequences at a cutover (docs/cutover.md step 6). Replication copies rows with the ids their
// owner generated, but not the owner's sequences: the new owner's sequence may stand far below
// the ids the tenant already has. Before the new owner takes the tenant's inserts, each sequence
// behind a sharded table's column (serial, bigserial or identity) is set past the old owner's
// value plus headroom. Never lowered: other tenants on the new owner may be using it.
import pg from "pg";
import type { TableInfo } from "../analysis/introspect";

/** Ids the old owner may still hand out (another tenant's insert there) before ours pass them. */
export const SEQUENCE_HEADROOM = 1_000_000n;

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
 * Sets each sequence on `to` to at least its value on `from` + headroom, in one round trip to
 * each (this runs inside the freeze window). Returns what it set, for the attempt's step note.
 */
export async function advanceSequences(
  from: pg.Pool,
  to: pg.Pool,
  sequences: readonly string[],
): Promise<SequenceBump[]> {
  if (sequences.length === 0) return [];
  const { rows } = await from.query<{ seq: string; v: string | null }>(
    "select s as seq, pg_sequence_last_value(s::regclass)::text as v from unnest($1::text[]) s",
    [sequences],
  );
  const floors = rows.map((r) => (BigInt(r.v ?? "0") + SEQUENCE_HEADROOM).toString());
  // greatest(): the new owner's own value may already be higher (its tenants' inserts).
  const set = await to.query<{ seq: string; v: string }>(
    `select s.seq, setval(s.seq::regclass, greatest(coalesce(pg_sequence_last_value(s.seq::regclass), 0), s.floor), true)::text as v
     from unnest($1::text[], $2::bigint[]) as s(seq, floor)`,
    [rows.map((r) => r.seq), floors],
  );
  const setBy = new Map(set.rows.map((r) => [r.seq, BigInt(r.v)]));
  return rows.map((r) => ({
    sequence: r.seq,
    oldOwner: BigInt(r.v ?? "0"),
    newOwner: setBy.get(r.seq) ?? 0n,
  }));
}

/**
 * advanceSequences from several old owners into one new owner (the breaker's rollback: every
 * shard of the set into legacy): each owner's values read in parallel, the largest per sequence
 * set on `to` by ONE statement. Not one advanceSequences per owner at once: sequences are not
 * transactional, so two concurrent setval(greatest(…)) passes could each read the old value and
 * the lower floor land last.
 */
export async function advanceSequencesFromAll(
  froms: readonly pg.Pool[],
  to: pg.Pool,
  sequences: readonly string[],
): Promise<void> {
  if (sequences.length === 0 || froms.length === 0) return;
  const read = await Promise.all(
    froms.map((from) =>
      from.query<{ seq: string; v: string | null }>(
        "select s as seq, pg_sequence_last_value(s::regclass)::text as v from unnest($1::text[]) s",
        [sequences],
      ),
    ),
  );
  const floors = new Map<string, bigint>();
  for (const { rows } of read)
    for (const r of rows) {
      const floor = BigInt(r.v ?? "0") + SEQUENCE_HEADROOM;
      if (floor > (floors.get(r.seq) ?? 0n)) floors.set(r.seq, floor);
    }
  await to.query(
    `select setval(s.seq::regclass, greatest(coalesce(pg_sequence_last_value(s.seq::regclass), 0), s.floor), true)
     from unnest($1::text[], $2::bigint[]) as s(seq, floor)`,
    [[...floors.keys()], [...floors.values()].map(String)],
  );
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
  for (const table of tables.filter((t) => t.kind === "sharded")) {
    const { rows } = await pool.query<{ attname: string; seq: string }>(
      `select a.attname, pg_get_serial_sequence($1, a.attname) as seq
       from pg_attribute a
       where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped
         and pg_get_serial_sequence($1, a.attname) is not null`,
      [table.qualified],
    );
    for (const { attname, seq } of rows) {
      await pool.query(
        `select setval($1::regclass, greatest(coalesce(pg_sequence_last_value($1::regclass), 0),
           coalesce((select max(${pg.escapeIdentifier(attname)})::bigint from ${table.qualified}), 0) + $2::bigint), true)`,
        [seq, SEQUENCE_HEADROOM.toString()],
      );
    }
  }
}
