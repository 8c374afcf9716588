// Verifying what the scan could not: a tenant whose hashes differed when its table was scanned is
// re-checked until every one of its rows is verified — equal, or confirmed different — or the pass
// says plainly which tenant is still unverified and why. "Clean" then means every row was checked.
//
// The scan reads legacy and the shards at slightly different moments, so a tenant written to
// during the scan differs for lag alone. Many such tenants are settled together first
// (settleTenants: steps 1–4 below, one statement per side for all of them). Protocol, per key
// range of one tenant on its shard (the tenant's keys up to its last one on legacy first — rows
// inserted after that are the next pass's, and the shard's rows beyond it are re-checked as
// possible extras):
//   1. On legacy, in ONE statement (one snapshot): the range's count and row-hash sum, a version
//      sum (of every row's xmin: any committed UPDATE, INSERT or DELETE changes it), and
//      pg_current_wal_insert_lsn() → L1, a barrier above every commit that snapshot sees.
//   2. Wait until CDC has applied L1 on the shards (waitForApplied).
//   3. Hash the range on the shard.
//   4. Count and version sum on legacy again.
//   If legacy's count and versions did not move between 1 and 4, legacy held one state throughout,
//   and the shard — past L1, and not past what legacy had committed by 3 — must show that state:
//   equal hashes verify the range. Unequal ones are located down to rows (locate) and each row is
//   re-checked (recheck.ts); once every difference is confirmed, the range is verified with drift.
//   If legacy moved, back off and try again (attempts, doubling back-off).
//   5. A range that keeps moving (after one round below the top) is split at its median key and each half verified the same way:
//      a hot tenant's quiet rows verify in a few rounds and only its hot rows remain.
//   6. A range of ≤ leafRows rows (256) that still moves is verified with its legacy rows held FOR SHARE
//      (NOWAIT-like: a short lock_timeout, so we never queue in front of the application): read
//      them and L1 while holding the locks, wait for CDC past L1 (bounded: lockWaitMs), read the
//      shard, release. A locked row cannot change, and its last change committed before the lock
//      was granted, so below L1: equal is verified, different is drift — even for a row updated
//      every millisecond whose drifted TOASTed column those updates never rewrite. Shard rows the
//      locked set does not contain (extras, or legacy rows inserted after the lock) go through the
//      row re-check.
// Anything left (CDC too far behind, rows locked by long transactions, the pass's time budget
// spent) is returned with its reason: the caller reports the tenant unverified and keeps its open
// mismatches open — an inconclusive re-check never resolves anything.
import { setTimeout as delay } from "node:timers/promises";
import type pg from "pg";
import type { Placement } from "../router/placement";
import type { SqlStatement } from "../shared/sql-statement";
import type { TablePlan } from "../shared/table-plan";
import { quoteIdent } from "../sql/identifiers";
import {
  type ChunkHash,
  columnDifferences,
  hashTenantsSql,
  type KeyRange,
  type KeyValues,
  keyAtOffsetSql,
  locate,
  Params,
  type ParityDb,
  type RowDifference,
  rangeRowsSql,
  rangeWhere,
  rowHashSql,
  rowValues,
  WHOLE_KEY_RANGE,
} from "./chunk-hash";
import { confirmDifferences, type WaitForApplied } from "./recheck";
import { type ParityClient, withParitySession } from "./session";

export interface VerifyOptions {
  /** Rounds of steps 1–4 on one range before it is split (or, at leaf size, locked). Default 3. */
  attempts?: number;
  /** First back-off between rounds; doubles, at most 2 s. Default 50 ms. */
  backoffMs?: number;
  /** Ranges of at most this many legacy rows are verified under row locks. Default 256. */
  leafRows?: number;
  /** How long legacy rows may stay locked while CDC catches up. Default 5 s. */
  lockWaitMs?: number;
  /** performance.now() after which no new round starts: what is left is reported unverified. */
  deadline?: number;
  /** Awaited before legacy hashes a range, with its expected rows: the caller's throttle. */
  take?: (rows: number) => Promise<void>;
}

export interface TenantVerdict {
  table: string;
  /** null for a reference table (the whole table on one shard). */
  tenant: string | null;
  shard: number;
  /** Legacy rows in the tenant when last measured. */
  rows: number;
  /** Rows verified equal or confirmed different. */
  rowsVerified: number;
  /** Confirmed drift (after the lag). */
  differences: RowDifference[];
  /** null when every row was verified; otherwise why not, in words for the parity page. */
  unverifiedReason: string | null;
  /** Protocol rounds run (hash rounds and locked reads). */
  rounds: number;
}

interface ScopeHash extends ChunkHash {
  version: string;
  lsn: bigint;
}

/** Step 1 (legacy, withBarrier) and step 3/4: one range of one tenant, count and hash in one statement. */
export function scopeHashSql(
  plan: TablePlan,
  range: KeyRange,
  tenant: string | null,
  side: "legacy" | "shard",
): SqlStatement {
  const params = new Params();
  const where = rangeWhere(plan, range, tenant, params);
  const legacyOnly =
    side === "legacy"
      ? ", coalesce(sum(hashtextextended(x.xmin::text, 0)), 0)::text as version, (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text as lsn"
      : "";
  return {
    text: `select count(*)::text as rows, coalesce(sum(${rowHashSql(plan)}), 0)::text as hash${legacyOnly} from ${plan.table.qualified} x ${where}`,
    values: params.values,
  };
}

async function scopeHash(
  client: ParityClient,
  plan: TablePlan,
  range: KeyRange,
  tenant: string | null,
  side: "legacy" | "shard",
): Promise<ScopeHash> {
  const statement = scopeHashSql(plan, range, tenant, side);
  const { rows } = await client.query<{ rows: string; hash: string; version?: string; lsn?: string }>(
    statement.text,
    statement.values,
  );
  const row = rows[0];
  return {
    rows: Number(row?.rows ?? 0),
    hash: row?.hash ?? "0",
    version: row?.version ?? "",
    lsn: BigInt(row?.lsn ?? 0),
  };
}

/** Step 1/4 for many tenants at once: per tenant count, hash and version sum, and L1 (legacy). */
export function tenantsVersionSql(plan: TablePlan, tenants: readonly string[]): SqlStatement {
  const shardKey = plan.keyColumns[0];
  if (plan.table.kind !== "sharded" || shardKey === undefined) {
    throw new Error(`${plan.table.qualified} is a reference table: it has no tenants to hash by.`);
  }
  const params = new Params();
  const column = `x.${quoteIdent(shardKey)}`;
  const list = params.add([...tenants], `${plan.keyTypes[0] ?? "text"}[]`);
  return {
    text:
      `select ${column}::text as tenant, count(*)::text as rows, coalesce(sum(${rowHashSql(plan)}), 0)::text as hash, ` +
      "coalesce(sum(hashtextextended(x.xmin::text, 0)), 0)::text as version, " +
      "(pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text as lsn " +
      `from ${plan.table.qualified} x where ${column} = any(${list}) group by ${column}`,
    values: params.values,
  };
}

async function readTenantHashes(client: ParityClient, statement: SqlStatement) {
  const { rows } = await client.query<{
    tenant: string;
    rows: string;
    hash: string;
    version?: string;
    lsn?: string;
  }>(statement.text, statement.values);
  let lsn = 0n;
  const byTenant = new Map<string, { rows: number; hash: string; version: string }>();
  for (const row of rows) {
    byTenant.set(row.tenant, { rows: Number(row.rows), hash: row.hash, version: row.version ?? "" });
    if (row.lsn !== undefined && BigInt(row.lsn) > lsn) lsn = BigInt(row.lsn);
  }
  return { byTenant, lsn };
}

/**
 * Steps 1–4 for many tenants of one sharded table at once, on their owning shards: one statement
 * per side and round, one wait per round, so a scan that saw hundreds of tenants move costs a few
 * rounds, not one wait per tenant. Returns the tenants verified equal; the rest (still moving, or
 * really different) are for verifyTenant, one by one.
 */
export async function settleTenants(
  legacy: pg.Pool,
  shards: readonly pg.Pool[],
  placement: Placement,
  plan: TablePlan,
  tenants: readonly string[],
  waitForApplied: WaitForApplied,
  options: VerifyOptions = {},
): Promise<Set<string>> {
  const verified = new Set<string>();
  let pending = [...tenants];
  // Rounds here are cheap (one statement per side for every tenant): more of them settle more.
  const attempts = (options.attempts ?? 3) + 2;
  const none = { rows: 0, hash: "0", version: "0" };
  for (let attempt = 1; attempt <= attempts && pending.length > 0; attempt++) {
    if (options.deadline !== undefined && performance.now() >= options.deadline) break;
    if (attempt > 1) await delay(Math.min(2_000, (options.backoffMs ?? 50) * 2 ** (attempt - 2)));
    const statement = tenantsVersionSql(plan, pending);
    const before = await withParitySession(legacy, (c) => readTenantHashes(c, statement));
    await options.take?.([...before.byTenant.values()].reduce((n, h) => n + h.rows, 0));
    try {
      await waitForApplied(before.lsn);
    } catch {
      break; // verifyTenant will wait (and say why) per tenant
    }
    const owned = new Map<number, string[]>();
    for (const tenant of pending) {
      const shard = placement.shardFor(tenant);
      owned.set(shard, [...(owned.get(shard) ?? []), tenant]);
    }
    const onShards = new Map<string, { rows: number; hash: string }>();
    await Promise.all(
      [...owned].map(async ([shard, mine]) => {
        const pool = shards[shard];
        if (!pool) return;
        const read = await withParitySession(pool, (c) => readTenantHashes(c, hashTenantsSql(plan, mine)));
        for (const [tenant, h] of read.byTenant) onShards.set(tenant, h);
      }),
    );
    const after = await withParitySession(legacy, (c) => readTenantHashes(c, statement));
    const next: string[] = [];
    for (const tenant of pending) {
      const b = before.byTenant.get(tenant) ?? none;
      const a = after.byTenant.get(tenant) ?? none;
      const s = onShards.get(tenant) ?? none;
      const settled = a.rows === b.rows && a.version === b.version && s.rows === b.rows && s.hash === b.hash;
      if (settled) verified.add(tenant);
      else next.push(tenant);
    }
    pending = next;
  }
  return verified;
}

/** The last key of a tenant (reference table: of the table) on legacy, in key order. */
export function lastKeySql(plan: TablePlan, tenant: string | null): SqlStatement {
  const params = new Params();
  const where = rangeWhere(plan, WHOLE_KEY_RANGE, tenant, params);
  const keys = plan.keyColumns.map((c) => `x.${quoteIdent(c)}`);
  return {
    text: `select array[${keys.map((k) => `${k}::text`).join(", ")}] as k from ${plan.table.qualified} x ${where} order by ${keys.map((k) => `${k} desc`).join(", ")} limit 1`,
    values: params.values,
  };
}

/**
 * A moving range this small is verified under row locks: each halving costs a round (a CDC wait),
 * and 256 rows held FOR SHARE for one lag delay writers to those rows by about that lag.
 */
const LOCKED_LEAF_ROWS = 256;

class OutOfTime extends Error {}

const LOCK_NOT_AVAILABLE = "55P03";

/**
 * Verifies one (table, tenant) on the shard that owns it — `target.shard` must be the owner (a
 * reference table: tenant null, any shard). See the protocol above.
 */
export async function verifyTenant(
  legacy: pg.Pool,
  shards: readonly pg.Pool[],
  placement: Placement,
  plan: TablePlan,
  target: { tenant: string | null; shard: number },
  waitForApplied: WaitForApplied,
  options: VerifyOptions = {},
): Promise<TenantVerdict> {
  const attempts = options.attempts ?? 3;
  const leafRows = options.leafRows ?? LOCKED_LEAF_ROWS;
  const lockWaitMs = options.lockWaitMs ?? 5_000;
  const shardPool = shards[target.shard];
  if (!shardPool) throw new Error(`there is no shard ${target.shard} among ${shards.length} shard pools.`);
  if (target.tenant !== null && placement.shardFor(target.tenant) !== target.shard) {
    throw new Error(
      `tenant ${target.tenant} belongs on shard ${placement.shardFor(target.tenant)}, not ${target.shard}: ` +
        "verify a stray copy with locate and the row re-check instead.",
    );
  }
  const { tenant } = target;
  const verdict: TenantVerdict = {
    table: plan.table.qualified,
    tenant,
    shard: target.shard,
    rows: 0,
    rowsVerified: 0,
    differences: [],
    unverifiedReason: null,
    rounds: 0,
  };
  const found = new Map<string, RowDifference>();
  const reasons = new Set<string>();
  let incomplete = false;

  return withParitySession(legacy, (l) =>
    withParitySession(shardPool, async (s) => {
      // locate and the row re-check take every shard; only this one is read.
      const shardDbs: ParityDb[] = shards.map((pool, i) => (i === target.shard ? s : pool));
      const checkTime = () => {
        if (options.deadline !== undefined && performance.now() >= options.deadline) throw new OutOfTime();
      };
      const backoff = (attempt: number) =>
        delay(Math.min(2_000, (options.backoffMs ?? 50) * 2 ** Math.max(0, attempt - 1)));

      /** Locates and re-checks a range whose hashes differ while legacy stood still; true if all confirmed. */
      const confirmRange = async (range: KeyRange): Promise<boolean> => {
        const located = await locate(l, shardDbs, placement, plan, range, target);
        if (located.differences.length === 0) return false;
        const rechecked = await confirmDifferences(
          l,
          shardDbs,
          placement,
          plan,
          located.differences,
          waitForApplied,
          { maxAttempts: 2 },
        );
        let all = true;
        for (const r of rechecked) {
          if (r.recheck.status === "confirmed" && r.recheck.kind) {
            found.set(JSON.stringify(r.difference.key), {
              ...r.difference,
              kind: r.recheck.kind,
              columns: r.recheck.columns,
              legacyRow: r.recheck.legacyRow,
              shardRow: r.recheck.shardRow,
            });
          } else {
            all = false;
          }
        }
        return all;
      };

      /** Step 6: a small range under row locks. Returns the rows verified, or null to retry. */
      const lockedCheck = async (range: KeyRange): Promise<number | null> => {
        verdict.rounds++;
        const read = rangeRowsSql(plan, range, tenant);
        let locked: { k: KeyValues; v: (string | null)[] }[];
        let shardRows: { k: KeyValues; v: (string | null)[] }[];
        // The parity session is read-only by default; this transaction only takes row locks.
        await l.query("begin read write");
        try {
          await l.query("set local lock_timeout = '200ms'");
          locked = (
            await l.query<{ k: KeyValues; v: (string | null)[] }>(`${read.text} for share of x`, read.values)
          ).rows;
          const { rows } = await l.query<{ lsn: string }>(
            "select (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text as lsn",
          );
          const l1 = BigInt(rows[0]?.lsn ?? 0);
          const timer = new AbortController();
          const caughtUp = await Promise.race([
            waitForApplied(l1).then(
              () => true,
              (error: Error) => error,
            ),
            delay(lockWaitMs, false, { signal: timer.signal }).catch(() => false),
          ]);
          timer.abort();
          if (caughtUp !== true) {
            reasons.add(
              caughtUp === false
                ? `CDC did not apply legacy's changes within ${Math.round(lockWaitMs / 1000)} s while its rows were held`
                : caughtUp.message,
            );
            return null;
          }
          shardRows = (await s.query<{ k: KeyValues; v: (string | null)[] }>(read.text, read.values)).rows;
        } catch (error) {
          if ((error as { code?: string }).code === LOCK_NOT_AVAILABLE) {
            reasons.add("its rows stayed locked by other transactions on legacy");
            return null;
          }
          throw error;
        } finally {
          await l.query("rollback").catch(() => {});
        }
        const onShard = new Map(shardRows.map((r) => [JSON.stringify(r.k), r.v]));
        const lockedKeys = new Set<string>();
        for (const row of locked) {
          const key = JSON.stringify(row.k);
          lockedKeys.add(key);
          const shardValues = onShard.get(key);
          const base = { table: plan.table.qualified, shard: target.shard, tenant, key: row.k };
          if (shardValues === undefined) {
            found.set(key, {
              ...base,
              kind: "missing",
              columns: [],
              legacyRow: rowValues(plan, row.v),
              shardRow: null,
            });
          } else {
            const columns = columnDifferences(plan, row.v, shardValues);
            if (columns.length) {
              found.set(key, {
                ...base,
                kind: "changed",
                columns,
                legacyRow: rowValues(plan, row.v),
                shardRow: rowValues(plan, shardValues),
              });
            }
          }
        }
        // Shard rows legacy did not hold when locked: extras, or rows inserted since (the re-check tells).
        const extras: RowDifference[] = shardRows
          .filter((r) => !lockedKeys.has(JSON.stringify(r.k)))
          .map((r) => ({
            table: plan.table.qualified,
            shard: target.shard,
            tenant,
            key: r.k,
            kind: "extra",
            columns: [],
            legacyRow: null,
            shardRow: rowValues(plan, r.v),
          }));
        if (extras.length) {
          const rechecked = await confirmDifferences(l, shardDbs, placement, plan, extras, waitForApplied, {
            maxAttempts: 3,
          });
          for (const r of rechecked) {
            if (r.recheck.status === "confirmed" && r.recheck.kind) {
              found.set(JSON.stringify(r.difference.key), { ...r.difference, kind: r.recheck.kind });
            } else if (r.recheck.status === "inconclusive") {
              reasons.add("a row on the shard kept appearing and disappearing on legacy");
              return null;
            }
          }
        }
        return locked.length;
      };

      /** Steps 1–6 for one range; returns the legacy rows it verified. */
      const verifyRange = async (range: KeyRange, depth: number): Promise<number> => {
        let last: ScopeHash | null = null;
        // A range already narrowed down gets fewer rounds before it is halved again.
        const rounds = depth === 0 ? attempts : 1;
        for (let attempt = 1; attempt <= rounds; attempt++) {
          checkTime();
          if (attempt > 1) await backoff(attempt - 1);
          verdict.rounds++;
          await options.take?.(last?.rows ?? leafRows);
          const before = await scopeHash(l, plan, range, tenant, "legacy");
          last = before;
          if (depth === 0) verdict.rows = before.rows;
          try {
            await waitForApplied(before.lsn);
          } catch (error) {
            // The wait already waited its time: more rounds (or halves) would only wait again.
            reasons.add((error as Error).message);
            incomplete = true;
            return 0;
          }
          const onShard = await scopeHash(s, plan, range, tenant, "shard");
          const after = await scopeHash(l, plan, range, tenant, "legacy");
          const stable = after.rows === before.rows && after.version === before.version;
          if (!stable) {
            reasons.add(`it kept changing through ${attempts} re-checks`);
            continue;
          }
          if (onShard.rows === before.rows && onShard.hash === before.hash) return before.rows;
          if (await confirmRange(range)) return before.rows;
        }
        // Still moving: narrow it down.
        const rows = last?.rows ?? 0;
        if (rows <= leafRows || depth >= 48) {
          for (let attempt = 1; attempt <= attempts; attempt++) {
            checkTime();
            if (attempt > 1) await backoff(attempt);
            const verified = await lockedCheck(range);
            if (verified !== null) return verified;
          }
          incomplete = true;
          return 0;
        }
        const median = keyAtOffsetSql(plan, range, Math.floor(rows / 2) - 1, tenant);
        const { rows: keys } = await l.query<{ k: KeyValues }>(median.text, median.values);
        const split = keys[0]?.k;
        if (!split) return verifyRange(range, 48); // emptied meanwhile: one locked look settles it
        const left = await verifyRange({ after: range.after, upTo: split }, depth + 1);
        const right = await verifyRange({ after: split, upTo: range.upTo }, depth + 1);
        return left + right;
      };

      let verified = 0;
      let complete = false;
      try {
        // The rows legacy holds now, up to its last key: rows inserted after it (a busy tenant's
        // new rows) are not what the scan counted, and would keep every round moving.
        const last = lastKeySql(plan, tenant);
        const upTo = (await l.query<{ k: KeyValues }>(last.text, last.values)).rows[0]?.k ?? null;
        verified = await verifyRange(upTo ? { after: null, upTo } : WHOLE_KEY_RANGE, 0);
        // Beyond that key: the shard must hold nothing legacy does not (rows inserted since are
        // resolved by the re-check; one still settling is the next pass's).
        if (upTo) {
          const tail = rangeRowsSql(plan, { after: upTo, upTo: null }, tenant);
          const { rows } = await s.query<{ k: KeyValues; v: (string | null)[] }>(tail.text, tail.values);
          if (rows.length) {
            const rechecked = await confirmDifferences(
              l,
              shardDbs,
              placement,
              plan,
              rows.map((r) => ({
                table: plan.table.qualified,
                shard: target.shard,
                tenant,
                key: r.k,
                kind: "extra" as const,
                columns: [],
                legacyRow: null,
                shardRow: rowValues(plan, r.v),
              })),
              waitForApplied,
              { maxAttempts: 2 },
            );
            for (const r of rechecked) {
              if (r.recheck.status === "confirmed" && r.recheck.kind) {
                found.set(JSON.stringify(r.difference.key), {
                  ...r.difference,
                  kind: r.recheck.kind,
                  columns: r.recheck.columns,
                  legacyRow: r.recheck.legacyRow,
                  shardRow: r.recheck.shardRow,
                });
              }
            }
          }
        }
        complete = true;
      } catch (error) {
        if (!(error instanceof OutOfTime)) throw error;
        reasons.add("the pass's re-check time ran out");
      }
      verdict.differences = [...found.values()];
      // A range that gave up counted nothing and left its reason; rounds that were retried left theirs too.
      const allVerified = complete && !incomplete;
      verdict.rowsVerified = allVerified ? verdict.rows : Math.min(verified, verdict.rows);
      verdict.unverifiedReason = allVerified
        ? null
        : [...reasons].join("; ") || "not every row could be compared";
      return verdict;
    }),
  );
}
