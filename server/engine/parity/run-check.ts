// A parity check of one plan, run by a worker: hash, locate, re-check past the lag, record.
//
// Kinds:
//   full    every chunk of every table (adaptive chunk size), in-database hashes on both sides
//   recent  only the (table, tenant) pairs CDC touched since the last recent pass
// Steps: 1. hash → 2. locate mismatched chunks down to rows → 3. re-check each row after CDC has
// applied past the moment legacy was read (no false alarms from lag) → 4. store confirmed rows as
// open mismatches; close earlier open ones this pass no longer finds → 5. record metrics (rows
// verified/s, open mismatches per table) for the drift chart and the gates.
import { db } from "../../db";
import { ZPlanSettings } from "../../schemas/plan";
import type { TableInfo } from "../analysis/introspect";
import { planTable, type TablePlan } from "../backfill/copy-chunk";
import { TokenBucket } from "../backfill/token-bucket";
import { loadMovementContext, recordEngineEvent, recordMetric } from "../runtime/movement-context";
import {
  compareTenants,
  fullPass,
  locate,
  type RowDifference,
  WHOLE_KEY_RANGE,
  WHOLE_RANGE,
} from "./chunk-hash";
import { confirmDifferences, slotCatchUp } from "./recheck";
import { forgetCheckedPairs, readTouchedPairs } from "./touched-pairs";

export type ParityKind = "full" | "recent";

interface TableSummary {
  table: string;
  rowsVerified: number;
  chunks: number;
  mismatches: number;
  checkedAt: string;
}

export async function runParityCheck(
  planId: string,
  kind: ParityKind,
): Promise<{ runId: bigint; confirmed: number }> {
  const ctx = await loadMovementContext(planId);
  const run = await db().parityRun.create({ data: { planId, kind } });
  const plan = await db().plan.findUniqueOrThrow({ where: { id: planId } });
  const bucket = new TokenBucket(ZPlanSettings.parse(plan.settings).parityRowsPerSecond);
  const started = performance.now();
  const waitForApplied = slotCatchUp(ctx.source, ctx.slotName, { timeoutMs: 60_000 });
  const plans = new Map<string, TablePlan>(
    ctx.schema.tables.map((t: TableInfo) => [t.qualified, planTable(t, ctx.schema.shardKeyColumn)]),
  );
  try {
    // 1–2. candidates
    let rowsVerified = 0;
    let chunksChecked = 0;
    let chunksMismatched = 0;
    const candidates: RowDifference[] = [];
    const summaries = new Map<string, TableSummary>();
    const touchedSince = new Date();
    const checkedPairs = new Set<string>();
    if (kind === "full") {
      let previousTotal = 0;
      let currentTable = "";
      let tableBase = 0;
      const result = await fullPass(
        ctx.source,
        ctx.shards,
        ctx.placement,
        ctx.schema,
        (p) => {
          // Progress is cumulative for the pass; a table's own count starts where the previous one ended.
          if (p.table !== currentTable) {
            currentTable = p.table;
            tableBase = previousTotal;
          }
          previousTotal = p.rowsVerified;
          const s = summaries.get(p.table) ?? {
            table: p.table,
            rowsVerified: 0,
            chunks: 0,
            mismatches: 0,
            checkedAt: "",
          };
          s.rowsVerified = p.rowsVerified - tableBase;
          s.chunks = p.chunks;
          summaries.set(p.table, s);
        },
        (rows) => bucket.take(rows),
      );
      rowsVerified = result.rowsVerified;
      chunksChecked = result.chunks;
      chunksMismatched = result.mismatchedChunks.length;
      for (const chunk of result.mismatchedChunks) {
        const plan = plans.get(chunk.table);
        if (!plan) continue;
        for (const m of chunk.mismatches) {
          const located = await locate(ctx.source, ctx.shards, ctx.placement, plan, chunk.range, {
            tenant: m.tenant,
            shard: m.shard,
          });
          candidates.push(...located.differences);
        }
      }
    } else {
      const touched = await readTouchedPairs(planId, 2_000);
      const tenantsOf = new Map<string, string[]>();
      for (const t of touched) {
        const tenants = tenantsOf.get(t.tableName);
        if (tenants) tenants.push(t.tenantKey);
        else tenantsOf.set(t.tableName, [t.tenantKey]);
      }
      // Per table, every touched tenant is hashed in one statement per side; only a tenant whose
      // hashes differ is walked down to its rows. (One range walk per tenant made ~8 round trips
      // each, a burst of thousands of queries every 30 s on legacy and the shards.)
      for (const [table, tenants] of tenantsOf) {
        const plan = plans.get(table);
        if (plan?.table.kind !== "sharded") continue;
        for (const tenant of tenants) checkedPairs.add(`${table}|${tenant}`);
        const comparison = await compareTenants(ctx.source, ctx.shards, ctx.placement, plan, tenants);
        await bucket.take(comparison.legacyRows);
        rowsVerified += comparison.rowsVerified;
        chunksChecked += tenants.length;
        chunksMismatched += comparison.mismatches.length;
        for (const m of comparison.mismatches) {
          const located = await locate(ctx.source, ctx.shards, ctx.placement, plan, WHOLE_KEY_RANGE, {
            tenant: m.tenant,
            shard: m.shard,
          });
          candidates.push(...located.differences);
        }
        const s = summaries.get(table) ?? { table, rowsVerified: 0, chunks: 0, mismatches: 0, checkedAt: "" };
        s.chunks += tenants.length;
        s.rowsVerified += comparison.rowsVerified;
        summaries.set(table, s);
      }
      // Forget only what this pass checked (and not stamped again shortly before or since it began).
      await forgetCheckedPairs(planId, touched, touchedSince);
    }

    // 3. re-check past the lag, one table at a time
    const confirmed: RowDifference[] = [];
    const byTable = new Map<string, RowDifference[]>();
    for (const c of candidates) byTable.set(c.table, [...(byTable.get(c.table) ?? []), c]);
    for (const [table, differences] of byTable) {
      const plan = plans.get(table);
      if (!plan) continue;
      const rechecked = await confirmDifferences(
        ctx.source,
        ctx.shards,
        ctx.placement,
        plan,
        differences,
        waitForApplied,
      );
      for (const r of rechecked) {
        if (r.recheck.status !== "confirmed" || !r.recheck.kind) continue;
        confirmed.push({
          ...r.difference,
          kind: r.recheck.kind,
          columns: r.recheck.columns,
          legacyRow: r.recheck.legacyRow,
          shardRow: r.recheck.shardRow,
        });
      }
    }

    // 4. record
    const now = new Date();
    for (const d of confirmed) {
      const s = summaries.get(d.table) ?? {
        table: d.table,
        rowsVerified: 0,
        chunks: 0,
        mismatches: 0,
        checkedAt: "",
      };
      s.mismatches++;
      summaries.set(d.table, s);
    }
    await db().$transaction(async (tx) => {
      const open = await tx.parityMismatch.findMany({ where: { planId, status: "open" } });
      const key = (table: string, shard: number, rowKey: unknown) =>
        `${table}|${shard}|${JSON.stringify(rowKey)}`;
      const found = new Set(confirmed.map((d) => key(d.table, d.shard, d.key)));
      const recheckedScope = (m: (typeof open)[number]) =>
        kind === "full" || checkedPairs.has(`${m.tableName}|${m.tenantKey}`);
      // An open mismatch this pass covered and did not find again is gone (fixed by hand, or by CDC).
      const gone = open.filter(
        (m) => recheckedScope(m) && !found.has(key(m.tableName, m.shardOrdinal, m.rowKey)),
      );
      if (gone.length) {
        await tx.parityMismatch.updateMany({
          where: { id: { in: gone.map((m) => m.id) } },
          data: { status: "resolved", closedAt: now },
        });
      }
      const known = new Set(open.map((m) => key(m.tableName, m.shardOrdinal, m.rowKey)));
      const fresh = confirmed.filter((d) => !known.has(key(d.table, d.shard, d.key)));
      if (fresh.length) {
        await tx.parityMismatch.createMany({
          data: fresh.map((d) => ({
            planId,
            runId: run.id,
            tableName: d.table,
            tenantKey: d.tenant,
            shardOrdinal: d.shard,
            rowKey: d.key,
            kind: d.kind,
            columns: d.columns.map((c) => c.column),
            legacyValues: d.legacyRow ?? undefined,
            shardValues: d.shardRow ?? undefined,
          })),
        });
      }
      await tx.parityRun.update({
        where: { id: run.id },
        data: {
          status: "complete",
          finishedAt: now,
          rowsVerified: BigInt(rowsVerified),
          chunksChecked,
          chunksMismatched,
          mismatchesConfirmed: confirmed.length,
          tables: [...summaries.values()].map((s) => ({ ...s, checkedAt: now.toISOString() })),
        },
      });
    });

    // 5. metrics
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
    return { runId: run.id, confirmed: confirmed.length };
  } catch (error) {
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
