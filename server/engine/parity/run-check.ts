// A parity check of one plan, run by a worker: hash, locate, re-check past the lag, record.
//
// Kinds:
//   full    every chunk of every table (adaptive chunk size), in-database hashes on both sides
//   recent  only the (table, tenant) pairs CDC touched since the last recent pass
// Steps: 1. hash every tenant on both sides → 2. verify each tenant whose hashes differed until
// every row is verified or confirmed different, past the lag (verify-tenant.ts), or report it
// unverified with the reason → 3. store confirmed rows as open mismatches; close open ones only
// where this pass verified their tenant (record-run.ts) → 4. record metrics (rows verified/s, open
// mismatches per table) for the drift chart and the gates.
// The run writes a heartbeat while it works (run-liveness.ts), so a run whose worker died is
// marked failed rather than left "running".
import pg from "pg";
import { ZPlanSettings } from "../../schemas/plan";
import type { TableInfo } from "../analysis/introspect";
import type { Placement } from "../router/placement";
import { yieldToReplication } from "../shared/replication-pressure";
import { planTable, type TablePlan } from "../shared/table-plan";
import { TokenBucket } from "../shared/token-bucket";
import { db } from "../store/db";
import { loadMovementContext, recordEngineEvent, recordMetric } from "../store/movement-context";
import { failAbandonedRuns, startRunHeartbeat } from "../store/run-liveness";
import { forgetCheckedPairs, readTouchedPairs } from "../store/touched-pairs";
import {
  type ChunkMismatch,
  compareTenants,
  fullPass,
  locate,
  type RowDifference,
  type ScanThrottle,
  WHOLE_KEY_RANGE,
  WHOLE_RANGE,
} from "./chunk-hash";
import { confirmDifferences, slotCatchUp, type WaitForApplied } from "./recheck";
import { recordRunOutcome, type UnverifiedScope } from "./record-run";
import { settleTenants, verifyTenant } from "./verify-tenant";

export type ParityKind = "full" | "recent";

interface TableSummary {
  table: string;
  rowsVerified: number;
  /** Legacy rows of the table (full) or of its checked tenants (recent). */
  rows: number;
  chunks: number;
  mismatches: number;
  /** Tenants not every row of which could be verified. */
  unverifiedTenants: number;
  checkedAt: string;
}

/** Tenants verified at once (each holds a legacy and a shard connection). */
const VERIFY_CONCURRENCY = 3;

/** How long a pass may spend re-checking tenants that differed at the scan, by default. */
const RECHECK_BUDGET_MS = 5 * 60_000;

interface Verification {
  confirmed: RowDifference[];
  rowsVerified: number;
  unverified: UnverifiedScope[];
}

/**
 * Step 2 for one table's mismatched tenants: each verified on its owning shard (verifyTenant); a
 * copy on a shard that does not own the tenant is located and its rows re-checked.
 */
async function verifyMismatches(
  source: pg.Pool,
  shards: readonly pg.Pool[],
  placement: Placement,
  plan: TablePlan,
  mismatches: readonly ChunkMismatch[],
  waitForApplied: WaitForApplied,
  options: { deadline: number; take: (rows: number) => Promise<void> },
): Promise<Verification> {
  const out: Verification = { confirmed: [], rowsVerified: 0, unverified: [] };
  const table = plan.table.qualified;
  // A reference table counts as verified only as far as its worst shard.
  let referenceVerified: number | null = null;
  // Most tenants differed only because writes landed mid-scan: settle them together first.
  const owned = mismatches.filter((m) => m.tenant !== null && placement.shardFor(m.tenant) === m.shard);
  const settled = owned.length
    ? await settleTenants(
        source,
        shards,
        placement,
        plan,
        owned.map((m) => m.tenant as string),
        waitForApplied,
        options,
      )
    : new Set<string>();
  const one = async (m: ChunkMismatch): Promise<void> => {
    if (m.tenant !== null && settled.has(m.tenant) && placement.shardFor(m.tenant) === m.shard) {
      out.rowsVerified += m.expected.rows;
      return;
    }
    const owned = m.tenant === null || placement.shardFor(m.tenant) === m.shard;
    if (!owned) {
      const located = await locate(source, shards, placement, plan, WHOLE_KEY_RANGE, m);
      const rechecked = await confirmDifferences(
        source,
        shards,
        placement,
        plan,
        located.differences,
        waitForApplied,
      );
      let settled = true;
      for (const r of rechecked) {
        if (r.recheck.status === "confirmed" && r.recheck.kind) {
          out.confirmed.push({ ...r.difference, kind: r.recheck.kind, shardRow: r.recheck.shardRow });
        } else if (r.recheck.status === "inconclusive") settled = false;
      }
      if (!settled) {
        out.unverified.push({
          table,
          tenant: m.tenant,
          shard: m.shard,
          rows: 0,
          reason: "rows this shard should not hold kept changing on legacy during the re-check",
        });
      }
      return;
    }
    const verdict = await verifyTenant(source, shards, placement, plan, m, waitForApplied, options);
    out.confirmed.push(...verdict.differences);
    // Rows are counted as the scan saw them, so "verified of total" adds up for the pass.
    const verified =
      verdict.unverifiedReason === null ? m.expected.rows : Math.min(verdict.rowsVerified, m.expected.rows);
    if (m.tenant === null) referenceVerified = Math.min(referenceVerified ?? verified, verified);
    else out.rowsVerified += verified;
    if (verdict.unverifiedReason !== null) {
      out.unverified.push({
        table,
        tenant: m.tenant,
        shard: m.shard,
        rows: m.expected.rows - verified,
        reason: verdict.unverifiedReason,
      });
    }
  };
  // A few tenants at a time: each spends most of its time waiting for CDC, and waits overlap.
  const queue = [...mismatches];
  await Promise.all(
    Array.from({ length: Math.min(VERIFY_CONCURRENCY, queue.length) }, async () => {
      for (let m = queue.shift(); m; m = queue.shift()) await one(m);
    }),
  );
  out.rowsVerified += referenceVerified ?? 0;
  return out;
}

/**
 * A full pass's pace: legacy's chunks take from the run's bucket (the re-checks share it), each
 * shard's from a bucket of its own at the same rate, and a chunk is at most 1/40 s of it (ScanThrottle
 * in chunk-hash.ts says why).
 */
function scanThrottle(legacy: TokenBucket, shards: number): ScanThrottle {
  const buckets = [legacy, ...Array.from({ length: shards }, () => new TokenBucket(legacy.ratePerSecond))];
  return {
    // Replication on this worker first: no chunk starts while it runs late, and the pace drops while
    // it does (replication-pressure.ts).
    take: async (side, rows) => {
      const pace = await yieldToReplication();
      await (buckets[side] ?? legacy).take(Math.ceil(rows / pace));
    },
    maxChunkRows: Math.max(500, Math.floor(legacy.ratePerSecond / 40)),
  };
}

export async function runParityCheck(
  planId: string,
  kind: ParityKind,
  options: { recheckBudgetMs?: number } = {},
): Promise<{
  runId: bigint;
  confirmed: number;
  rowsVerified: number;
  rowsTotal: number;
  unverified: UnverifiedScope[];
}> {
  const ctx = await loadMovementContext(planId);
  await failAbandonedRuns(planId);
  const run = await db().parityRun.create({ data: { planId, kind } });
  const heartbeat = startRunHeartbeat(run.id);
  const plan = await db().plan.findUniqueOrThrow({ where: { id: planId } });
  const bucket = new TokenBucket(ZPlanSettings.parse(plan.settings).parityRowsPerSecond);
  const started = performance.now();
  const verifyOptions = {
    deadline: started + (options.recheckBudgetMs ?? RECHECK_BUDGET_MS),
    take: (rows: number) => bucket.take(rows),
  };
  // The waits read the slot on a connection of their own: tenants being verified hold legacy
  // connections (some with row locks) while they wait, and must never starve the wait of one.
  const slotReader = new pg.Pool({
    connectionString: ctx.sourceUrl,
    max: 1,
    application_name: "shardshift-parity-wait",
  });
  slotReader.on("error", () => {});
  const waitForApplied = slotCatchUp(slotReader, ctx.slotName, { timeoutMs: 60_000 });
  const plans = new Map<string, TablePlan>(
    ctx.schema.tables.map((t: TableInfo) => [t.qualified, planTable(t, ctx.schema.shardKeyColumn)]),
  );
  const summaries = new Map<string, TableSummary>();
  const summary = (table: string): TableSummary => {
    const s = summaries.get(table) ?? {
      table,
      rowsVerified: 0,
      rows: 0,
      chunks: 0,
      mismatches: 0,
      unverifiedTenants: 0,
      checkedAt: "",
    };
    summaries.set(table, s);
    return s;
  };
  try {
    // 1. hash; 2. verify what differed
    let rowsVerified = 0;
    let rowsTotal = 0;
    let chunksChecked = 0;
    let chunksMismatched = 0;
    const confirmed: RowDifference[] = [];
    const unverified: UnverifiedScope[] = [];
    const touchedSince = new Date();
    const checkedPairs = new Set<string>();
    const addVerification = (table: string, v: Verification) => {
      confirmed.push(...v.confirmed);
      unverified.push(...v.unverified);
      rowsVerified += v.rowsVerified;
      const s = summary(table);
      s.rowsVerified += v.rowsVerified;
      s.unverifiedTenants += v.unverified.length;
    };
    let touched: Awaited<ReturnType<typeof readTouchedPairs>> = [];
    if (kind === "full") {
      let previous = { rowsVerified: 0, legacyRows: 0 };
      const result = await fullPass(
        ctx.source,
        ctx.shards,
        ctx.placement,
        ctx.schema,
        (p) => {
          // Progress is cumulative for the pass: a table's own figures are the step since the last.
          const s = summary(p.table);
          s.rowsVerified = p.rowsVerified - previous.rowsVerified;
          s.rows = p.legacyRows - previous.legacyRows;
          s.chunks = p.chunks;
          previous = { rowsVerified: p.rowsVerified, legacyRows: p.legacyRows };
        },
        scanThrottle(bucket, ctx.shards.length),
      );
      rowsVerified = result.rowsVerified;
      rowsTotal = result.legacyRows;
      chunksChecked = result.chunks;
      chunksMismatched = result.mismatchedChunks.length;
      for (const chunk of result.mismatchedChunks) {
        const plan = plans.get(chunk.table);
        if (!plan) continue;
        addVerification(
          chunk.table,
          await verifyMismatches(
            ctx.source,
            ctx.shards,
            ctx.placement,
            plan,
            chunk.mismatches,
            waitForApplied,
            verifyOptions,
          ),
        );
      }
    } else {
      touched = await readTouchedPairs(planId, 2_000);
      const tenantsOf = new Map<string, string[]>();
      for (const t of touched) {
        const tenants = tenantsOf.get(t.tableName);
        if (tenants) tenants.push(t.tenantKey);
        else tenantsOf.set(t.tableName, [t.tenantKey]);
      }
      // Per table, every touched tenant is hashed in one statement per side; only a tenant whose
      // hashes differ is verified further. (One range walk per tenant made ~8 round trips each, a
      // burst of thousands of queries every 30 s on legacy and the shards.)
      for (const [table, tenants] of tenantsOf) {
        const plan = plans.get(table);
        if (plan?.table.kind !== "sharded") continue;
        for (const tenant of tenants) checkedPairs.add(`${table}|${tenant}`);
        const comparison = await compareTenants(ctx.source, ctx.shards, ctx.placement, plan, tenants);
        await bucket.take(comparison.legacyRows);
        rowsVerified += comparison.rowsVerified;
        rowsTotal += comparison.legacyRows;
        chunksChecked += tenants.length;
        chunksMismatched += comparison.mismatches.length;
        const s = summary(table);
        s.chunks += tenants.length;
        s.rowsVerified += comparison.rowsVerified;
        s.rows += comparison.legacyRows;
        addVerification(
          table,
          await verifyMismatches(
            ctx.source,
            ctx.shards,
            ctx.placement,
            plan,
            comparison.mismatches,
            waitForApplied,
            verifyOptions,
          ),
        );
      }
    }

    // 3. record
    for (const d of confirmed) summary(d.table).mismatches++;
    const now = new Date();
    await heartbeat.stop();
    await slotReader.end().catch(() => {});
    await recordRunOutcome(
      planId,
      run.id,
      confirmed,
      {
        covered: (table, tenant) => kind === "full" || checkedPairs.has(`${table}|${tenant}`),
        unverified,
      },
      {
        rowsVerified,
        rowsTotal,
        chunksChecked,
        chunksMismatched,
        tables: [...summaries.values()].map((s) => ({ ...s, checkedAt: now.toISOString() })),
      },
    );
    if (kind === "recent") {
      // Forget only what this pass verified (and not stamped again shortly before or since it
      // began): an unverified tenant stays touched, so the next recent pass tries it again.
      const left = new Set(unverified.map((u) => `${u.table}|${u.tenant}`));
      await forgetCheckedPairs(
        planId,
        touched.filter((t) => !left.has(`${t.tableName}|${t.tenantKey}`)),
        touchedSince,
      );
    }

    // 4. metrics
    const seconds = (performance.now() - started) / 1000;
    if (kind === "full" && seconds > 0)
      await recordMetric(planId, "parity.rows_per_s", rowsVerified / seconds);
    const openNow = await db().parityMismatch.groupBy({
      by: ["tableName"],
      where: { planId, status: "open" },
      _count: true,
    });
    const openByTable = new Map(openNow.map((o) => [o.tableName, o._count]));
    for (const t of ctx.schema.tables) {
      await recordMetric(planId, `parity.mismatches:${t.qualified}`, openByTable.get(t.qualified) ?? 0);
    }
    if (confirmed.length) {
      await recordEngineEvent(
        planId,
        "warn",
        "parity",
        `${kind} check found ${confirmed.length} row(s) that differ after the re-check.`,
      );
    }
    if (unverified.length) {
      const rows = unverified.reduce((n, u) => n + u.rows, 0);
      await recordEngineEvent(
        planId,
        "warn",
        "parity",
        `${kind} check could not verify ${rows.toLocaleString("en")} row(s) of ${unverified.length} tenant(s) ` +
          `(first: ${unverified[0]?.table} tenant ${unverified[0]?.tenant ?? "—"}: ${unverified[0]?.reason}). ` +
          "They stay unverified until a later check verifies them; open mismatches there stay open.",
      );
    }
    return { runId: run.id, confirmed: confirmed.length, rowsVerified, rowsTotal, unverified };
  } catch (error) {
    await heartbeat.stop();
    await slotReader.end().catch(() => {});
    await db().parityRun.update({
      where: { id: run.id },
      data: { status: "failed", finishedAt: new Date(), error: (error as Error).message },
    });
    await recordEngineEvent(
      planId,
      "error",
      "parity",
      `The ${kind} check failed: ${(error as Error).message}`,
    );
    throw error;
  }
}

export { WHOLE_RANGE };
