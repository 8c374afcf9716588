// The no-false-alarm rule: a row difference found by locate() counts as drift only if it survives
// a re-check after the current replication lag. Under live writes legacy is always a little ahead
// of the shards; without this rule every busy tenant would "drift" all day.
//
// Protocol, per batch of keys on one shard (every read on a pinned parity session):
//   1. Read the legacy rows and pg_current_wal_insert_lsn() in ONE statement (one snapshot) → L1.
//      Every commit visible to that snapshot wrote its commit record before the snapshot was
//      taken, so it lies below L1. (The insert position, not pg_current_wal_lsn(), the write
//      position: with synchronous_commit = off a commit is visible before its record is written.)
//      Each row is read with its xmin: any committed UPDATE creates a new row version, so an
//      unchanged xmin means the row stayed the same version, even if a value went away and came back.
//   2. await waitForApplied(L1): the caller returns once CDC has applied (confirmed) L1 on the
//      shards — slotCatchUp() polls the slot; a no-op fits when nothing replicates.
//   3. Read the shard rows.
//   4. Read the legacy rows again.
//   Then per key: if the legacy row changed between 1 and 4 (value, presence or version) the
//   answer is `inconclusive` — try again later. Otherwise legacy held that one version throughout,
//   and the shard, having applied at least everything up to L1 and nothing legacy had not committed
//   before step 3, must show it: equal → `resolved` (it was lag), different → `confirmed` drift.
//
// The one gap: a key absent at 1 and at 4 may have been inserted and deleted in between, and a
// shard read at 3 may show the insert without the delete yet. So an `extra` row is confirmed only
// if a second round, with a later L1, confirms it again.
//
// A row on a shard that does not own its tenant is expected absent whatever legacy holds.
import { setTimeout as delay } from "node:timers/promises";
import pg from "pg";
import { formatLsn, readSlotStatus } from "../cdc/slot";
import type { Placement } from "../router/placement";
import type { SqlStatement } from "../shared/sql-statement";
import type { TablePlan } from "../shared/table-plan";
import { quoteIdent } from "../sql/identifiers";
import {
  type ColumnDifference,
  columnDifferences,
  type KeyValues,
  type ParityDb,
  type RowDifference,
  type RowValues,
  rowValues,
} from "./chunk-hash";

import { type ParityClient, withParitySession } from "./session";

export type WaitForApplied = (lsn: bigint) => Promise<void>;

export type RecheckStatus = "confirmed" | "resolved" | "inconclusive";

export interface RowRecheck {
  status: RecheckStatus;
  key: KeyValues;
  /** Legacy's WAL insert position when its row was read (step 1) in the last round. */
  legacyLsn: bigint;
  /** confirmed only: what the difference is after the lag. */
  kind: RowDifference["kind"] | null;
  /** confirmed and changed only. */
  columns: ColumnDifference[];
  legacyRow: RowValues | null;
  shardRow: RowValues | null;
  /** Rounds of the protocol run for this key. */
  rounds: number;
}

async function pinned<T>(db: ParityDb, fn: (client: ParityClient) => Promise<T>): Promise<T> {
  return db instanceof pg.Pool ? withParitySession(db, fn) : fn(db);
}

/** Rows by key (absent keys too), each with its version; with `withLsn`, the WAL insert position. */
export function readRowsByKeySql(
  plan: TablePlan,
  keys: readonly KeyValues[],
  withLsn: boolean,
): SqlStatement {
  if (keys.length === 0) throw new Error("readRowsByKeySql needs at least one key");
  const values: unknown[] = [];
  const param = (value: unknown, type: string) => {
    values.push(value);
    return `$${values.length}::${type}`;
  };
  const tuples = keys.map((key, i) => {
    if (key.length !== plan.keyColumns.length) {
      throw new Error(
        `key ${JSON.stringify(key)} does not match ${plan.table.qualified}'s key (${plan.keyColumns.join(", ")})`,
      );
    }
    return `(${i}, ${key.map((v, j) => param(v, plan.keyTypes[j] ?? "text")).join(", ")})`;
  });
  const aliases = plan.keyColumns.map((_, j) => `k${j}`);
  const join = plan.keyColumns.map((c, j) => `x.${quoteIdent(c)} = w.k${j}`).join(" and ");
  const first = quoteIdent(plan.keyColumns[0] ?? "");
  const columns = `array[${plan.table.columns.map((c) => `x.${quoteIdent(c.name)}::text`).join(", ")}]`;
  const lsn = withLsn ? ", (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text as lsn" : "";
  return {
    text:
      `select w.i, x.${first} is not null as found, x.xmin::text as version, ${columns} as v${lsn} ` +
      `from (values ${tuples.join(", ")}) as w(i, ${aliases.join(", ")}) ` +
      `left join ${plan.table.qualified} x on ${join} order by w.i`,
    values,
  };
}

interface ReadRow {
  found: boolean;
  version: string | null;
  values: (string | null)[];
}

async function readRowsByKey(
  client: ParityClient,
  plan: TablePlan,
  keys: readonly KeyValues[],
  withLsn: boolean,
): Promise<{ rows: ReadRow[]; lsn: bigint }> {
  const statement = readRowsByKeySql(plan, keys, withLsn);
  const result = await client.query<{
    i: number;
    found: boolean;
    version: string | null;
    v: (string | null)[];
    lsn?: string;
  }>(statement.text, statement.values);
  let lsn = 0n;
  const rows: ReadRow[] = [];
  for (const row of result.rows) {
    if (row.lsn !== undefined && BigInt(row.lsn) > lsn) lsn = BigInt(row.lsn);
    rows.push({ found: row.found, version: row.version, values: row.found ? row.v : [] });
  }
  return { rows, lsn };
}

function sameValues(a: readonly (string | null)[], b: readonly (string | null)[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

const READ_BATCH = 500;

/** One round of the protocol (steps 1–4) for a batch of keys on one shard. */
async function recheckRound(
  legacy: ParityClient,
  shard: ParityClient,
  plan: TablePlan,
  keys: readonly KeyValues[],
  expectAbsent: readonly boolean[],
  waitForApplied: WaitForApplied,
): Promise<RowRecheck[]> {
  // 1. legacy rows and L1 in one snapshot (one statement per batch: take the highest L1)
  const before: ReadRow[] = [];
  let l1 = 0n;
  for (let i = 0; i < keys.length; i += READ_BATCH) {
    const read = await readRowsByKey(legacy, plan, keys.slice(i, i + READ_BATCH), true);
    before.push(...read.rows);
    if (read.lsn > l1) l1 = read.lsn;
  }
  // 2. wait until CDC has applied everything legacy had committed at step 1
  await waitForApplied(l1);
  // 3. the shard rows
  const onShard: ReadRow[] = [];
  for (let i = 0; i < keys.length; i += READ_BATCH) {
    onShard.push(...(await readRowsByKey(shard, plan, keys.slice(i, i + READ_BATCH), false)).rows);
  }
  // 4. legacy rows again
  const after: ReadRow[] = [];
  for (let i = 0; i < keys.length; i += READ_BATCH) {
    after.push(...(await readRowsByKey(legacy, plan, keys.slice(i, i + READ_BATCH), false)).rows);
  }

  return keys.map((key, i) => {
    const b = before[i];
    const a = after[i];
    const s = onShard[i];
    if (!b || !a || !s) throw new Error(`the re-check read no row for key ${JSON.stringify(key)}`);
    const base = { key, legacyLsn: l1, rounds: 1 };
    const legacyRow = b.found ? rowValues(plan, b.values) : null;
    const shardRow = s.found ? rowValues(plan, s.values) : null;
    const stable = a.found === b.found && a.version === b.version && sameValues(a.values, b.values);
    if (!stable) {
      return { ...base, status: "inconclusive", kind: null, columns: [], legacyRow, shardRow };
    }
    const wanted = b.found && !expectAbsent[i];
    if (!wanted && !s.found) {
      return { ...base, status: "resolved", kind: null, columns: [], legacyRow, shardRow };
    }
    if (!wanted) return { ...base, status: "confirmed", kind: "extra", columns: [], legacyRow, shardRow };
    if (!s.found) return { ...base, status: "confirmed", kind: "missing", columns: [], legacyRow, shardRow };
    const columns = columnDifferences(plan, b.values, s.values);
    return columns.length === 0
      ? { ...base, status: "resolved", kind: null, columns, legacyRow, shardRow }
      : { ...base, status: "confirmed", kind: "changed", columns, legacyRow, shardRow };
  });
}

/**
 * Runs rounds until each key is resolved or confirmed (an `extra` needs two confirming rounds), or
 * `maxRounds` is spent; keys still undecided stay `inconclusive`.
 */
async function recheckKeys(
  legacy: ParityClient,
  shard: ParityClient,
  plan: TablePlan,
  keys: readonly KeyValues[],
  expectAbsent: readonly boolean[],
  waitForApplied: WaitForApplied,
  maxRounds: number,
): Promise<RowRecheck[]> {
  const results: (RowRecheck | undefined)[] = keys.map(() => undefined);
  const extraConfirmations = keys.map(() => 0);
  let pending = keys.map((_, i) => i);
  for (let round = 1; pending.length > 0 && round <= maxRounds; round++) {
    const checked = await recheckRound(
      legacy,
      shard,
      plan,
      pending.map((i) => keys[i] as KeyValues),
      pending.map((i) => expectAbsent[i] ?? false),
      waitForApplied,
    );
    const next: number[] = [];
    for (const [j, result] of checked.entries()) {
      const i = pending[j] as number;
      results[i] = { ...result, rounds: round };
      if (result.status === "confirmed" && result.kind === "extra") {
        extraConfirmations[i] = (extraConfirmations[i] ?? 0) + 1;
        // Confirmed once: run one more round with a later L1 (see "the one gap" above).
        if ((extraConfirmations[i] ?? 0) < 2) {
          results[i] = { ...result, status: "inconclusive", kind: null, rounds: round };
          next.push(i);
        }
      } else {
        extraConfirmations[i] = 0;
        if (result.status === "inconclusive") next.push(i);
      }
    }
    pending = next;
  }
  return results.map((r, i) => {
    if (!r)
      throw new Error(`no re-check ran for key ${JSON.stringify(keys[i])}; maxRounds must be at least 1`);
    return r;
  });
}

/**
 * Re-checks one row difference after the current lag (protocol above). `waitForApplied` must
 * return once CDC has applied legacy up to the given LSN on the shards (slotCatchUp does that);
 * pass `async () => {}` when nothing replicates. `expectAbsent`: the shard does not own the row's
 * tenant, so it must not hold the row at all.
 */
export async function confirmRowDifference(
  legacy: ParityDb,
  shard: ParityDb,
  plan: TablePlan,
  key: KeyValues,
  waitForApplied: WaitForApplied,
  options: { expectAbsent?: boolean; maxRounds?: number } = {},
): Promise<RowRecheck> {
  const [result] = await pinned(legacy, (l) =>
    pinned(shard, (s) =>
      recheckKeys(l, s, plan, [key], [options.expectAbsent ?? false], waitForApplied, options.maxRounds ?? 2),
    ),
  );
  if (!result) throw new Error(`the re-check returned nothing for key ${JSON.stringify(key)}`);
  return result;
}

export interface DifferenceRecheck {
  /** As reported by locate. */
  difference: RowDifference;
  recheck: RowRecheck;
}

/**
 * Re-checks many differences of one table: one wait per shard and round, not per row. A difference
 * whose legacy row keeps changing stays `inconclusive` after `maxAttempts` rounds: look again later.
 */
export async function confirmDifferences(
  legacy: ParityDb,
  shards: readonly ParityDb[],
  placement: Placement,
  plan: TablePlan,
  differences: readonly RowDifference[],
  waitForApplied: WaitForApplied,
  options: { maxAttempts?: number } = {},
): Promise<DifferenceRecheck[]> {
  const maxAttempts = options.maxAttempts ?? 3;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new Error(`maxAttempts must be a positive integer, not ${maxAttempts}`);
  }
  const byShard = new Map<number, number[]>();
  for (const [i, difference] of differences.entries()) {
    if (difference.table !== plan.table.qualified) {
      throw new Error(
        `difference ${i} is in ${difference.table}, not ${plan.table.qualified}; re-check one table at a time.`,
      );
    }
    byShard.set(difference.shard, [...(byShard.get(difference.shard) ?? []), i]);
  }
  const out: (DifferenceRecheck | undefined)[] = differences.map(() => undefined);
  for (const [ordinal, indexes] of byShard) {
    const shard = shards[ordinal];
    if (shard === undefined) {
      throw new Error(
        `a difference names shard ${ordinal}, but only ${shards.length} shard connections were given.`,
      );
    }
    const items = indexes.map((i) => differences[i] as RowDifference);
    const results = await pinned(legacy, (l) =>
      pinned(shard, (s) =>
        recheckKeys(
          l,
          s,
          plan,
          items.map((d) => d.key),
          items.map((d) => d.tenant !== null && placement.shardFor(d.tenant) !== ordinal),
          waitForApplied,
          maxAttempts,
        ),
      ),
    );
    for (const [j, i] of indexes.entries()) {
      const recheck = results[j];
      if (recheck) out[i] = { difference: differences[i] as RowDifference, recheck };
    }
  }
  return out.filter((r): r is DifferenceRecheck => r !== undefined);
}

/**
 * A waitForApplied that polls the CDC slot on legacy until its confirmed_flush_lsn reaches the
 * LSN (the consumer confirms only what is durable on the shards). Needs a consumer that also
 * confirms keepalives/heartbeats, or an idle source never reaches the current insert position.
 */
export function slotCatchUp(
  source: pg.Pool,
  slot: string,
  options: { timeoutMs?: number; pollMs?: number } = {},
): WaitForApplied {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const pollMs = options.pollMs ?? 50;
  return async (lsn) => {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const status = await readSlotStatus(source, slot);
      if (status === null) {
        throw new Error(
          `replication slot "${slot}" does not exist on legacy, so the parity re-check cannot wait for CDC. ` +
            "Start CDC for this plan, or re-check with a no-op wait if nothing replicates.",
        );
      }
      const confirmed = status.confirmedFlushLsn ?? 0n;
      if (confirmed >= lsn) return;
      if (performance.now() >= deadline) {
        throw new Error(
          `CDC slot "${slot}" confirmed only up to ${formatLsn(confirmed)}, not ${formatLsn(lsn)}, within ` +
            `${Math.round(timeoutMs / 1000)} s: the lag is too high to re-check parity now. The differences stay ` +
            "unconfirmed; re-check when CDC lag is lower.",
        );
      }
      await delay(pollMs);
    }
  };
}
