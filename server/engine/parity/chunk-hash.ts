// Parity core: find, locate and describe drift between legacy and the shards without shipping the
// rows of matching chunks over the wire.
//
// 1. chunkBoundaries walks legacy's key order (the backfill's: shard key, then primary key) and
//    returns a boundary every ~targetRows rows. Ranges are (after, upTo]: lower exclusive, upper
//    inclusive, the first and last open, so together they cover the whole key space — a row that
//    exists only on a shard still falls in exactly one range.
// 2. hashChunk runs the same statement on legacy and on each shard: per tenant (sharded tables) or
//    for the whole range (reference tables), count(*) and sum(rowHashSql) (see rowHashSql).
//    sum() over bigint is numeric, so it never overflows; a sum is order-independent and, unlike
//    xor, a duplicated row does not cancel itself out.
// 3. compareChunk checks each legacy tenant against the shard that owns it, and flags rows a shard
//    holds for a tenant it does not own (or that legacy does not have). A reference range must be
//    equal on every shard.
// 4. locate bisects one mismatched (range, tenant, shard) by the median key of the larger side,
//    down to ≤ 64 rows, then diffs those rows column by column. Sums are additive, so a right
//    half's count and hash are the parent's minus the left half's: one hash query per level.
//
// Invariants:
// - The hash covers exactly the columns the row diff compares (the schema's columns, in its order,
//   rendered by the server as text): a hash mismatch is always explainable by a column difference,
//   and a column the shard has but the schema does not is ignored by both.
// - Every statement that renders values runs on a ParityClient (pinned settings, see session.ts),
//   boundaries included: a float or timestamptz key rendered with other settings would not select
//   the same rows when cast back on the other side.
// - Identifiers are always quoted; key values travel as the server's text and are cast back with
//   the column's declared type, so they compare as values, not as text.
// - Reads only. Legacy and shards are read at slightly different moments: under live writes a
//   mismatch may be replication lag, which recheck.ts separates from drift.
import pg from "pg";
import type { SourceSchema } from "../analysis/introspect";
import type { Placement } from "../router/placement";
import type { SqlStatement } from "../shared/sql-statement";
import { planTable, type TablePlan } from "../shared/table-plan";
import { quoteIdent } from "../sql/identifiers";
import {
  assertComparableSessions,
  type ParityClient,
  withParitySession,
  withParitySessions,
} from "./session";

/** Values of plan.keyColumns as the server's text, in that order. */
export type KeyValues = string[];

/** Lower bound exclusive, upper bound inclusive; null = open. */
export interface KeyRange {
  after: KeyValues | null;
  upTo: KeyValues | null;
}

export interface ChunkHash {
  rows: number;
  /** Sum of the rows' 64-bit hashes, as numeric text (exact). */
  hash: string;
}

/** Hashes of one range by tenant key text; a reference table's single entry is under WHOLE_RANGE. */
export type ChunkHashes = Map<string, ChunkHash>;

export const WHOLE_RANGE = "";

/** Every key of a table (or of one tenant, with a tenant given). */
export const WHOLE_KEY_RANGE: Readonly<KeyRange> = { after: null, upTo: null };

export const EMPTY: ChunkHash = { rows: 0, hash: "0" };

/** Row differences are described down to this many rows on the larger side of a range. */
export const LOCATE_LEAF_ROWS = 64;

/** 2^48 rows: a range never needs more halvings unless concurrent writes keep refilling it. */
const MAX_BISECT_DEPTH = 48;

/** A legacy or shard database: a pool (a parity session is pinned per call) or a pinned session. */
export type ParityDb = pg.Pool | ParityClient;

async function pinned<T>(db: ParityDb, fn: (client: ParityClient) => Promise<T>): Promise<T> {
  return db instanceof pg.Pool ? withParitySession(db, fn) : fn(db);
}

// ---------------------------------------------------------------------------------------------
// SQL builders (pure)

export type { SqlStatement };

export class Params {
  readonly values: unknown[] = [];
  add(value: unknown, type?: string): string {
    this.values.push(value);
    return type ? `$${this.values.length}::${type}` : `$${this.values.length}`;
  }
}

function keyList(plan: TablePlan): string {
  return plan.keyColumns.map((c) => `x.${quoteIdent(c)}`).join(", ");
}

export function keyText(plan: TablePlan): string {
  return `array[${plan.keyColumns.map((c) => `x.${quoteIdent(c)}::text`).join(", ")}]`;
}

/** Types whose values are equal exactly when their text under the pinned settings is: hashed as values. */
const HASHED_AS_VALUE =
  /^(smallint|integer|bigint|oid|boolean|uuid|date|bytea|timestamp(\(\d\))? with(out)? time zone)$/;
/** Text types: hashed as bytes (COLLATE "C"), so a case-insensitive collation cannot hide a change. */
const HASHED_AS_BYTES = /^(text|character varying(\(\d+\))?)$/;

/**
 * The row's hash: hash_record_extended over the schema's columns in order, each hashed by its own
 * type's hash function where that is exact (see the lists above) and as its text otherwise —
 * numeric 1.0 vs 1.00, jsonb, intervals and floats compare as their rendering, like the row diff.
 * Equal hash inputs ⇔ equal column texts, so a hash mismatch is always explainable by a column
 * difference. Hashing values instead of the whole row's text costs a third: no output functions.
 */
export function rowHashSql(plan: TablePlan): string {
  const parts = plan.table.columns.map((c) => {
    const column = `x.${quoteIdent(c.name)}`;
    if (HASHED_AS_VALUE.test(c.type)) return column;
    if (HASHED_AS_BYTES.test(c.type)) return `(${column} COLLATE "C")`;
    return `${column}::text`;
  });
  return `hash_record_extended(row(${parts.join(", ")}), 0)`;
}

function assertKey(plan: TablePlan, key: KeyValues, what: string): void {
  if (key.length !== plan.keyColumns.length) {
    throw new Error(
      `${what} for ${plan.table.qualified} has ${key.length} values but the key (${plan.keyColumns.join(", ")}) ` +
        `has ${plan.keyColumns.length}; boundaries must come from chunkBoundaries for the same table plan.`,
    );
  }
}

function keyTuple(plan: TablePlan, key: KeyValues, params: Params): string {
  return `(${key.map((v, i) => params.add(v, plan.keyTypes[i])).join(", ")})`;
}

/** Where clauses for a key range, optionally narrowed to one tenant (sharded tables only). */
export function rangeWhere(plan: TablePlan, range: KeyRange, tenant: string | null, params: Params): string {
  const clauses: string[] = [];
  if (range.after) {
    assertKey(plan, range.after, "the range's lower bound");
    clauses.push(`(${keyList(plan)}) > ${keyTuple(plan, range.after, params)}`);
  }
  if (range.upTo) {
    assertKey(plan, range.upTo, "the range's upper bound");
    clauses.push(`(${keyList(plan)}) <= ${keyTuple(plan, range.upTo, params)}`);
  }
  if (tenant !== null) {
    const shardKey = plan.keyColumns[0];
    if (plan.table.kind !== "sharded" || shardKey === undefined) {
      throw new Error(
        `${plan.table.qualified} is a reference table: it has no tenants to narrow a range to.`,
      );
    }
    clauses.push(`x.${quoteIdent(shardKey)} = ${params.add(tenant, plan.keyTypes[0])}`);
  }
  return clauses.length ? `where ${clauses.join(" and ")}` : "";
}

/** The in-database hash of a range: per tenant for sharded tables, one row for reference tables. */
export function hashChunkSql(plan: TablePlan, range: KeyRange, tenant: string | null = null): SqlStatement {
  const params = new Params();
  const where = rangeWhere(plan, range, tenant, params);
  const aggregates = `count(*)::text as rows, coalesce(sum(${rowHashSql(plan)}), 0)::text as hash`;
  const shardKey = plan.keyColumns[0];
  if (plan.table.kind === "reference" || shardKey === undefined) {
    return {
      text: `select '' as tenant, ${aggregates} from ${plan.table.qualified} x ${where}`,
      values: params.values,
    };
  }
  const tenantColumn = `x.${quoteIdent(shardKey)}`;
  return {
    text: `select ${tenantColumn}::text as tenant, ${aggregates} from ${plan.table.qualified} x ${where} group by ${tenantColumn}`,
    values: params.values,
  };
}

/**
 * Whole tenants of a sharded table, hashed per tenant in one statement (the recent pass: many
 * tenants, each small, so one query per side instead of a range walk per tenant).
 */
export function hashTenantsSql(plan: TablePlan, tenants: readonly string[]): SqlStatement {
  const shardKey = plan.keyColumns[0];
  if (plan.table.kind !== "sharded" || shardKey === undefined) {
    throw new Error(`${plan.table.qualified} is a reference table: it has no tenants to hash by.`);
  }
  const params = new Params();
  const tenantColumn = `x.${quoteIdent(shardKey)}`;
  const list = params.add([...tenants], `${plan.keyTypes[0] ?? "text"}[]`);
  return {
    text:
      `select ${tenantColumn}::text as tenant, count(*)::text as rows, coalesce(sum(${rowHashSql(plan)}), 0)::text as hash ` +
      `from ${plan.table.qualified} x where ${tenantColumn} = any(${list}) group by ${tenantColumn}`,
    values: params.values,
  };
}

/** The key `offset` rows into a range (0 = its first row), in key order. */
export function keyAtOffsetSql(
  plan: TablePlan,
  range: KeyRange,
  offset: number,
  tenant: string | null = null,
): SqlStatement {
  const params = new Params();
  const where = rangeWhere(plan, range, tenant, params);
  return {
    text: `select ${keyText(plan)} as k from ${plan.table.qualified} x ${where} order by ${keyList(plan)} offset ${params.add(offset, "bigint")} limit 1`,
    values: params.values,
  };
}

/** Every row of a (small) range: its key and each schema column as the server's text. */
export function rangeRowsSql(plan: TablePlan, range: KeyRange, tenant: string | null = null): SqlStatement {
  const params = new Params();
  const where = rangeWhere(plan, range, tenant, params);
  const values = `array[${plan.table.columns.map((c) => `x.${quoteIdent(c.name)}::text`).join(", ")}]`;
  return {
    text: `select ${keyText(plan)} as k, ${values} as v from ${plan.table.qualified} x ${where} order by ${keyList(plan)}`,
    values: params.values,
  };
}

// ---------------------------------------------------------------------------------------------
// Boundaries

/**
 * Rows per chunk for a table of about `estimatedRows` rows: ~64 chunks, but never fewer than 5,000
 * rows nor more than 50,000. Below 5,000 the fixed cost of a chunk (four statements, their round
 * trips, and a bitmap heap scan that touches most of an unclustered table's pages whatever the
 * chunk's size) outweighs the hashing: measured on the demo data, 1,000-row chunks verify ~40%
 * fewer rows per second. Above 50,000 a single mismatch costs a long bisection and a statement
 * holds its snapshot for long.
 */
export function chunkTargetRows(estimatedRows: number): number {
  const rows = Number.isFinite(estimatedRows) && estimatedRows > 0 ? estimatedRows : 0;
  return Math.min(50_000, Math.max(5_000, Math.round(rows / 64)));
}

async function estimatedRows(client: ParityClient, plan: TablePlan): Promise<number> {
  const { rows } = await client.query<{ n: string }>(
    "select greatest(reltuples, 0)::bigint::text as n from pg_class where oid = $1::regclass",
    [plan.table.qualified],
  );
  return Number(rows[0]?.n ?? 0);
}

/**
 * Upper bounds (inclusive) of consecutive chunks of ~targetRows rows in key order, read on legacy
 * (keyset walk, one index probe per chunk). Default targetRows: chunkTargetRows of the live row
 * estimate. Turn them into ranges with rangesFromBoundaries.
 */
export async function chunkBoundaries(
  legacy: ParityDb,
  plan: TablePlan,
  targetRows?: number,
): Promise<KeyValues[]> {
  return pinned(legacy, async (client) => {
    const step = targetRows ?? chunkTargetRows(await estimatedRows(client, plan));
    if (!Number.isInteger(step) || step < 1) {
      throw new Error(`targetRows must be a positive integer, not ${step}`);
    }
    const boundaries: KeyValues[] = [];
    let after: KeyValues | null = null;
    for (;;) {
      const statement = keyAtOffsetSql(plan, { after, upTo: null }, step - 1);
      const { rows } = await client.query<{ k: KeyValues }>(statement.text, statement.values);
      const key = rows[0]?.k;
      if (!key) return boundaries;
      boundaries.push(key);
      after = key;
    }
  });
}

/** Consecutive ranges covering the whole key space: (-∞, b1], (b1, b2], …, (bn, +∞). */
export function rangesFromBoundaries(boundaries: readonly KeyValues[]): KeyRange[] {
  const ranges: KeyRange[] = [];
  let after: KeyValues | null = null;
  for (const upTo of boundaries) {
    ranges.push({ after, upTo });
    after = upTo;
  }
  ranges.push({ after, upTo: null });
  return ranges;
}

// ---------------------------------------------------------------------------------------------
// Hash and compare

/** Count and hash of a range, computed in the database (per tenant, or WHOLE_RANGE). */
export async function hashChunk(
  client: ParityClient,
  plan: TablePlan,
  range: KeyRange,
  tenant: string | null = null,
): Promise<ChunkHashes> {
  return readHashes(client, plan, hashChunkSql(plan, range, tenant));
}

async function readHashes(
  client: ParityClient,
  plan: TablePlan,
  statement: SqlStatement,
): Promise<ChunkHashes> {
  const { rows } = await client.query<{ tenant: string | null; rows: string; hash: string }>(
    statement.text,
    statement.values,
  );
  const hashes: ChunkHashes = new Map();
  for (const row of rows) {
    if (row.tenant === null) {
      throw new Error(
        `${plan.table.qualified} has ${row.rows} rows with a NULL ${plan.keyColumns[0] ?? "shard key"} in this range: ` +
          "they belong to no tenant and cannot be placed or compared. Give them a tenant (or delete them) on legacy.",
      );
    }
    hashes.set(row.tenant, { rows: Number(row.rows), hash: row.hash });
  }
  return hashes;
}

function sameHash(a: ChunkHash, b: ChunkHash): boolean {
  return a.rows === b.rows && a.hash === b.hash;
}

export interface ChunkMismatch {
  /** Tenant key text; null for reference tables. */
  tenant: string | null;
  /** The shard whose rows differ. */
  shard: number;
  /** What legacy says this shard should hold for the tenant (zero rows if it should hold none). */
  expected: ChunkHash;
  actual: ChunkHash;
}

export interface ChunkComparison {
  table: string;
  range: KeyRange;
  /** Rows of the range on legacy. */
  legacyRows: number;
  /** Legacy rows whose tenant (reference tables: every shard) compared equal. */
  rowsVerified: number;
  mismatches: ChunkMismatch[];
}

function assertShardCount(shards: readonly unknown[], placement: Placement): void {
  if (shards.length !== placement.shardCount) {
    throw new Error(
      `parity was given ${shards.length} shard connections but the placement has ${placement.shardCount} shards; ` +
        "pass one connection per shard, in ordinal order.",
    );
  }
}

/** Compares one range: legacy's per-tenant hashes against each tenant's owning shard. */
export async function compareChunk(
  legacy: ParityDb,
  shards: readonly ParityDb[],
  placement: Placement,
  plan: TablePlan,
  range: KeyRange,
): Promise<ChunkComparison> {
  assertShardCount(shards, placement);
  const [legacyHashes, ...shardHashes] = await Promise.all([
    pinned(legacy, (c) => hashChunk(c, plan, range)),
    ...shards.map((shard) => pinned(shard, (c) => hashChunk(c, plan, range))),
  ]);
  return compareHashes(placement, plan, range, legacyHashes ?? new Map(), shardHashes);
}

/**
 * Whole tenants of one sharded table on legacy against their owning shards: one statement per
 * side. (Rows a non-owning shard holds for them are the full pass's to find.)
 */
export async function compareTenants(
  legacy: ParityDb,
  shards: readonly ParityDb[],
  placement: Placement,
  plan: TablePlan,
  tenants: readonly string[],
): Promise<ChunkComparison> {
  assertShardCount(shards, placement);
  const owned: string[][] = shards.map(() => []);
  for (const tenant of tenants) owned[placement.shardFor(tenant)]?.push(tenant);
  const none: ChunkHashes = new Map();
  const [legacyHashes, ...shardHashes] = await Promise.all([
    tenants.length ? pinned(legacy, (c) => readHashes(c, plan, hashTenantsSql(plan, tenants))) : none,
    ...shards.map((shard, i) => {
      const mine = owned[i] ?? [];
      return mine.length ? pinned(shard, (c) => readHashes(c, plan, hashTenantsSql(plan, mine))) : none;
    }),
  ]);
  return compareHashes(placement, plan, WHOLE_KEY_RANGE, legacyHashes ?? none, shardHashes);
}

/** Legacy's per-tenant hashes of a range against each tenant's owning shard's (pure). */
export function compareHashes(
  placement: Placement,
  plan: TablePlan,
  range: KeyRange,
  expected: ChunkHashes,
  shardHashes: readonly ChunkHashes[],
): ChunkComparison {
  const mismatches: ChunkMismatch[] = [];
  let legacyRows = 0;
  let rowsVerified = 0;

  if (plan.table.kind === "reference") {
    const want = expected.get(WHOLE_RANGE) ?? EMPTY;
    legacyRows = want.rows;
    for (const [shard, hashes] of shardHashes.entries()) {
      const actual = hashes.get(WHOLE_RANGE) ?? EMPTY;
      if (!sameHash(want, actual)) mismatches.push({ tenant: null, shard, expected: want, actual });
    }
    if (mismatches.length === 0) rowsVerified = want.rows;
  } else {
    for (const [tenant, want] of expected) {
      legacyRows += want.rows;
      const shard = placement.shardFor(tenant);
      const actual = shardHashes[shard]?.get(tenant) ?? EMPTY;
      if (sameHash(want, actual)) rowsVerified += want.rows;
      else mismatches.push({ tenant, shard, expected: want, actual });
    }
    // Rows a shard holds that legacy does not place there: a tenant legacy lacks, or a stray copy.
    for (const [shard, hashes] of shardHashes.entries()) {
      for (const [tenant, actual] of hashes) {
        const owner = placement.shardFor(tenant);
        if (owner === shard && expected.has(tenant)) continue;
        mismatches.push({ tenant, shard, expected: EMPTY, actual });
      }
    }
  }
  mismatches.sort((a, b) => a.shard - b.shard || (a.tenant ?? "").localeCompare(b.tenant ?? ""));
  return { table: plan.table.qualified, range, legacyRows, rowsVerified, mismatches };
}

// ---------------------------------------------------------------------------------------------
// Locate

export type RowValues = Record<string, string | null>;

export interface ColumnDifference {
  column: string;
  legacy: string | null;
  shard: string | null;
}

export interface RowDifference {
  table: string;
  shard: number;
  /** Tenant key text; null for reference tables. */
  tenant: string | null;
  key: KeyValues;
  /** missing: on legacy, not on the shard; extra: on the shard, not on legacy; changed: both, different. */
  kind: "missing" | "extra" | "changed";
  /** changed only: the columns whose text differs, with both values. */
  columns: ColumnDifference[];
  legacyRow: RowValues | null;
  shardRow: RowValues | null;
}

export interface LocateResult {
  differences: RowDifference[];
  /** Ranges hashed while bisecting (for reports and benchmarks). */
  rangesHashed: number;
  /** Small ranges diffed row by row. */
  rangesDiffed: number;
}

interface Side {
  client: ParityClient;
  tenant: string | null;
  /** Legacy's side for a tenant the shard must not hold: always empty, never queried. */
  empty: boolean;
}

async function sideHash(side: Side, plan: TablePlan, range: KeyRange): Promise<ChunkHash> {
  if (side.empty) return EMPTY;
  const hashes = await hashChunk(side.client, plan, range, side.tenant);
  return hashes.get(side.tenant ?? WHOLE_RANGE) ?? EMPTY;
}

type RowText = (string | null)[];

async function sideRows(side: Side, plan: TablePlan, range: KeyRange): Promise<Map<string, RowText>> {
  const rows = new Map<string, RowText>();
  if (side.empty) return rows;
  const statement = rangeRowsSql(plan, range, side.tenant);
  const result = await side.client.query<{ k: KeyValues; v: RowText }>(statement.text, statement.values);
  for (const row of result.rows) rows.set(JSON.stringify(row.k), row.v);
  return rows;
}

function subtract(parent: ChunkHash, part: ChunkHash): ChunkHash {
  return { rows: parent.rows - part.rows, hash: (BigInt(parent.hash) - BigInt(part.hash)).toString() };
}

/** Column values by name, in schema order. */
export function rowValues(plan: TablePlan, values: readonly (string | null)[]): RowValues {
  const row: RowValues = {};
  for (const [i, column] of plan.table.columns.entries()) row[column.name] = values[i] ?? null;
  return row;
}

/** Columns whose text differs between two renderings of the same row. */
export function columnDifferences(
  plan: TablePlan,
  legacy: readonly (string | null)[],
  shard: readonly (string | null)[],
): ColumnDifference[] {
  const differences: ColumnDifference[] = [];
  for (const [i, column] of plan.table.columns.entries()) {
    const a = legacy[i] ?? null;
    const b = shard[i] ?? null;
    if (a !== b) differences.push({ column: column.name, legacy: a, shard: b });
  }
  return differences;
}

/**
 * Bisects a mismatched range for one (tenant, shard) — reference tables: tenant null — down to
 * ranges of ≤ leafRows rows on the larger side, and describes their rows that differ.
 */
export async function locate(
  legacy: ParityDb,
  shards: readonly ParityDb[],
  placement: Placement,
  plan: TablePlan,
  range: KeyRange,
  target: { tenant: string | null; shard: number },
  leafRows = LOCATE_LEAF_ROWS,
): Promise<LocateResult> {
  assertShardCount(shards, placement);
  const shardDb = shards[target.shard];
  if (shardDb === undefined) {
    throw new Error(
      `there is no shard ${target.shard}; the placement has shards 0…${placement.shardCount - 1}.`,
    );
  }
  if (plan.table.kind === "sharded" && target.tenant === null) {
    throw new Error(`${plan.table.qualified} is sharded: name the tenant whose rows to locate.`);
  }
  const tenant = plan.table.kind === "sharded" ? target.tenant : null;
  // Legacy rows belong on this shard only if it owns the tenant (reference rows: on every shard).
  const legacyEmpty = tenant !== null && placement.shardFor(tenant) !== target.shard;
  return pinned(legacy, (legacyClient) =>
    pinned(shardDb, async (shardClient) => {
      const legacySide: Side = { client: legacyClient, tenant, empty: legacyEmpty };
      const shardSide: Side = { client: shardClient, tenant, empty: false };
      const result: LocateResult = { differences: [], rangesHashed: 0, rangesDiffed: 0 };

      const hashBoth = async (r: KeyRange): Promise<[ChunkHash, ChunkHash]> => {
        result.rangesHashed++;
        return Promise.all([sideHash(legacySide, plan, r), sideHash(shardSide, plan, r)]);
      };

      const diff = async (r: KeyRange) => {
        result.rangesDiffed++;
        const [want, have] = await Promise.all([sideRows(legacySide, plan, r), sideRows(shardSide, plan, r)]);
        const report = (key: string, kind: RowDifference["kind"], l?: RowText, s?: RowText) => {
          result.differences.push({
            table: plan.table.qualified,
            shard: target.shard,
            tenant,
            key: JSON.parse(key) as KeyValues,
            kind,
            columns: l && s ? columnDifferences(plan, l, s) : [],
            legacyRow: l ? rowValues(plan, l) : null,
            shardRow: s ? rowValues(plan, s) : null,
          });
        };
        for (const [key, l] of want) {
          const s = have.get(key);
          if (s === undefined) report(key, "missing", l);
          else if (columnDifferences(plan, l, s).length > 0) report(key, "changed", l, s);
        }
        for (const [key, s] of have) if (!want.has(key)) report(key, "extra", undefined, s);
      };

      const visit = async (r: KeyRange, known: [ChunkHash, ChunkHash], depth: number): Promise<void> => {
        const [l, s] = known;
        if (sameHash(l, s)) return;
        const larger = Math.max(l.rows, s.rows);
        // The depth bound only matters if writes keep pouring into the range while we bisect it.
        if (larger <= leafRows || depth >= MAX_BISECT_DEPTH) return diff(r);
        // Split at the larger side's median: each half holds at most half of that side's rows,
        // so every step shrinks the work and the bisection ends.
        const side = l.rows >= s.rows ? legacySide : shardSide;
        const statement = keyAtOffsetSql(plan, r, Math.floor(larger / 2) - 1, side.tenant);
        const { rows } = await side.client.query<{ k: KeyValues }>(statement.text, statement.values);
        const median = rows[0]?.k;
        // The range changed under us (concurrent writes): describe what is there now.
        if (!median) return diff(r);
        const left: KeyRange = { after: r.after, upTo: median };
        const right: KeyRange = { after: median, upTo: r.upTo };
        const leftHashes = await hashBoth(left);
        await visit(left, leftHashes, depth + 1);
        await visit(right, [subtract(l, leftHashes[0]), subtract(s, leftHashes[1])], depth + 1);
      };

      // Differences come out range by range in key order (within a leaf: legacy's rows, then extras).
      await visit(range, await hashBoth(range), 0);
      return result;
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Full pass

export interface FullPassProgress {
  table: string;
  chunk: number;
  chunks: number;
  rowsVerified: number;
  /** Legacy rows hashed so far in the pass. */
  legacyRows: number;
}

export interface FullPassResult {
  rowsVerified: number;
  legacyRows: number;
  /** Scan chunks run on legacy. */
  chunks: number;
  /** Per table, the tenants (reference tables: the whole table) whose hashes differed. */
  mismatchedChunks: ChunkComparison[];
  ms: number;
}

const TEXT_KEY_TYPE = /^(text|character|character varying|name|citext|bpchar|varchar)\b/;

/**
 * Pages per scan chunk for a table of `pages` pages: ~64 chunks, at least 4,096 pages (32 MB) and
 * at most 32,768 (256 MB). A chunk returns one row per tenant it holds, so small chunks cost more
 * in results than in hashing; 256 MB hash in well under a second, so statements stay short and the
 * throttle still acts often.
 */
export function scanChunkPages(pages: number): number {
  return Math.min(32_768, Math.max(4_096, Math.ceil(Math.max(pages, 0) / 64)));
}

/** One table's per-tenant (or WHOLE_RANGE) count and hash sum on one side, and its scan chunks. */
interface TableScan {
  hashes: ChunkHashes;
  rows: number;
  chunks: number;
}

/**
 * How a full pass paces itself (the plan's parity rate): every side waits for its own tokens before
 * each chunk, and no chunk is longer than 1/40 s of the rate (5,000 rows at the default 200,000/s).
 *
 * Every side, not only legacy: after cutover the shards serve production too, and an unthrottled
 * shard scan ran each table's share at a full core per shard while legacy's throttled scan took its
 * time (the bench's busy-worker pass: 12.9 s with it, 6.1 s without, on two cores). Bounded chunks
 * for the same reason as the backfill's: a 256 MB chunk let through by the bucket is a second of
 * one core flat out, then a second of nothing; small chunks spread the same work evenly, and a pause
 * or cancel is seen as soon. Small because every chunk runs on legacy and the shards at once: a
 * quarter second of rows (50,000) was a burst of tens of ms holding both cores of the bench's
 * machine, and CDC's lag p99 beside a full pass followed it (busy worker 32.1 ms; 26.5 ms at 1/40).
 */
export interface ScanThrottle {
  /** Awaited before each chunk of `side` (0: legacy, i + 1: shard i) with the rows it expects. */
  take(side: number, expectedRows: number): Promise<void>;
  /** The most rows a chunk may expect (null: scanChunkPages alone decides). */
  maxChunkRows: number | null;
}

/**
 * Hashes a whole table per tenant in physical order: consecutive ranges of pages (TID range scans,
 * as cheap as a sequential scan, whatever order the rows were written in), the sums added up per
 * tenant. Each chunk is its own statement and snapshot: a row updated mid-scan can be counted in
 * two chunks or none, which shows up as a tenant mismatch that the per-tenant re-hash in locate()
 * (one snapshot, by key) does not confirm — a cost under heavy writes, never a false report.
 */
async function scanTable(
  client: ParityClient,
  plan: TablePlan,
  side: number,
  throttle?: ScanThrottle,
  pagesPerChunk?: number,
): Promise<TableScan> {
  // A partitioned root stores nothing itself: a TID range on it reads that range of every leaf
  // partition, so the chunks walk the largest leaf's pages and expect every leaf's rows.
  const { rows: sizes } = await client.query<{ pages: string; tuples: string; leaves: string; most: string }>(
    `select coalesce(max(pg_relation_size(c.oid) / current_setting('block_size')::int), 0)::text as pages,
            coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint::text as tuples,
            count(*)::text as leaves,
            ((current_setting('block_size')::int - 24) / 28)::text as most
       from pg_class c
      where c.relkind <> 'p'
        and (c.oid = $1::regclass or c.oid in (select relid from pg_partition_tree($1::regclass)))`,
    [plan.table.qualified],
  );
  const pages = Number(sizes[0]?.pages ?? 0);
  const maxRows = throttle?.maxChunkRows ?? null;
  const longest = pagesPerChunk ?? scanChunkPages(pages);
  // Rows per page (of every leaf together): reltuples first, then what each chunk really held.
  // reltuples is 0 or -1 on a table never analyzed or analyzed before it was filled (the shards
  // right after a backfill): the estimate is then the most a page can hold (MaxHeapTuplesPerPage,
  // per leaf), never "no rows" — that made one chunk of the whole table, charged a single token.
  const estimated = pages > 0 ? Number(sizes[0]?.tuples ?? 0) / pages : 0;
  let rowsPerPage =
    estimated > 0 ? estimated : Math.max(1, Number(sizes[0]?.leaves ?? 1)) * Number(sizes[0]?.most ?? 291);
  const stepFor = (perPage: number) =>
    Math.max(
      1,
      Math.min(
        longest,
        maxRows !== null && perPage > 0 ? Math.floor(maxRows / perPage) : Number.POSITIVE_INFINITY,
      ),
    );
  let step = stepFor(rowsPerPage);
  const shardKey = plan.keyColumns[0];
  const grouped = plan.table.kind === "sharded" && shardKey !== undefined;
  const tenant = grouped ? `x.${quoteIdent(shardKey)}::text` : "''";
  const sums = new Map<string, { rows: number; hash: bigint }>();
  const scan: TableScan = { hashes: new Map(), rows: 0, chunks: 0 };
  for (let first = 0; ; ) {
    // The last chunk is open-ended: pages added while the pass runs are read too.
    const last = first + step >= pages;
    await throttle?.take(side, Math.max(1, Math.round(step * rowsPerPage)));
    const where = `where x.ctid >= '(${first},0)'::tid${last ? "" : ` and x.ctid < '(${first + step},0)'::tid`}`;
    const { rows } = await client.query<{ tenant: string | null; rows: string; hash: string }>(
      `select ${tenant} as tenant, count(*)::text as rows, coalesce(sum(${rowHashSql(plan)}), 0)::text as hash
         from ${plan.table.qualified} x ${where}${grouped ? ` group by ${tenant.replace("::text", "")}` : ""}`,
    );
    scan.chunks++;
    let chunkRows = 0;
    for (const row of rows) {
      if (row.tenant === null) {
        throw new Error(
          `${plan.table.qualified} has ${row.rows} rows with a NULL ${shardKey ?? "shard key"}: ` +
            "they belong to no tenant and cannot be placed or compared. Give them a tenant (or delete them) on legacy.",
        );
      }
      const sum = sums.get(row.tenant) ?? { rows: 0, hash: 0n };
      sum.rows += Number(row.rows);
      sum.hash += BigInt(row.hash);
      sums.set(row.tenant, sum);
      scan.rows += Number(row.rows);
      chunkRows += Number(row.rows);
    }
    if (last) break;
    first += step;
    // The next chunk is sized by this one's density (pages nearby hold rows alike); after an empty
    // chunk (dead or sparse pages) the density estimate halves, so the step doubles.
    if (maxRows !== null) {
      rowsPerPage = chunkRows > 0 ? chunkRows / step : rowsPerPage / 2;
      step = stepFor(rowsPerPage);
    }
  }
  for (const [key, sum] of sums) {
    if (sum.rows > 0) scan.hashes.set(key, { rows: sum.rows, hash: sum.hash.toString() });
  }
  return scan;
}

/**
 * Checks every table: legacy and every shard hash the whole table per tenant at once (scanTable),
 * then each tenant's sums are compared. One pinned session per database for the whole pass; the
 * caller's throttle paces every side's chunks (ScanThrottle). A mismatched tenant comes back as a
 * ChunkComparison over the whole key range, which locate() narrows down to rows.
 */
export async function fullPass(
  legacy: pg.Pool,
  shards: readonly pg.Pool[],
  placement: Placement,
  schema: SourceSchema,
  onProgress?: (progress: FullPassProgress) => void,
  /** The caller's pace (parity must not starve production, on legacy or on a shard). */
  throttle?: ScanThrottle,
  /** Test seam: a fixed chunk size in pages instead of scanChunkPages. */
  pagesPerChunk?: number,
): Promise<FullPassResult> {
  assertShardCount(shards, placement);
  const startedAt = performance.now();
  const plans = schema.tables.map((table) => planTable(table, schema.shardKeyColumn));
  return withParitySessions(legacy, shards, async (legacyClient, shardClients) => {
    await assertComparableSessions(
      [legacyClient, ...shardClients],
      ["legacy", ...shardClients.map((_, i) => `shard-${i}`)],
      { orderedByText: plans.some((p) => p.keyTypes.some((t) => TEXT_KEY_TYPE.test(t))) },
    );
    const result: FullPassResult = { rowsVerified: 0, legacyRows: 0, chunks: 0, mismatchedChunks: [], ms: 0 };
    for (const plan of plans) {
      // Every side scans the table at once; the shards, holding a share each, finish first.
      const [legacyScan, ...shardScans] = await Promise.all([
        scanTable(legacyClient, plan, 0, throttle, pagesPerChunk),
        ...shardClients.map((c, i) => scanTable(c, plan, i + 1, throttle, pagesPerChunk)),
      ]);
      if (!legacyScan) continue;
      const comparison = compareHashes(
        placement,
        plan,
        WHOLE_KEY_RANGE,
        legacyScan.hashes,
        shardScans.map((s) => s.hashes),
      );
      result.chunks += legacyScan.chunks;
      result.rowsVerified += comparison.rowsVerified;
      result.legacyRows += comparison.legacyRows;
      if (comparison.mismatches.length > 0) result.mismatchedChunks.push(comparison);
      onProgress?.({
        table: plan.table.qualified,
        chunk: legacyScan.chunks,
        chunks: legacyScan.chunks,
        rowsVerified: result.rowsVerified,
        legacyRows: result.legacyRows,
      });
    }
    result.ms = Math.round(performance.now() - startedAt);
    return result;
  });
}
