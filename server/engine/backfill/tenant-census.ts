// The tenant census of a data movement: how many rows each tenant has in each sharded table on
// legacy, counted once, in the backfill's copy order (the shard key first). It sizes the tenant
// cohorts (smallest tenants first) and turns a table's checkpoint into per-tenant progress: a
// tenant before the checkpoint's tenant is copied, the checkpoint's own tenant is partly copied.
//
// The count runs beside the backfill, one table at a time, each in its own read-only snapshot: it
// is a figure for progress and cohort sizes, not part of the copy's correctness, so rows written
// since only make a tenant's figure slightly stale (a finished table reports every tenant copied).
import type pg from "pg";
import type { TableInfo } from "../analysis/introspect";
import { quoteIdent } from "../sql/identifiers";
import { checkOut, connectionLost } from "../sql/pools";
import { setLocalRenderingSql } from "../sql/rendering";
import { db } from "../store/db";
import { loadMovementContext, recordEngineEvent } from "../store/movement-context";

export interface TenantRows {
  /** The shard key's text as COPY renders it (the output function), which the placement hashes. */
  tenant: string;
  rows: number;
}

/**
 * Rows per tenant of `table`, in the order the backfill copies them (ORDER BY the shard key, in
 * its column's collation). Rows whose key is NULL sort last and are left out: they belong to no tenant.
 */
export async function countTenantRows(
  client: pg.ClientBase,
  table: TableInfo,
  shardKeyColumn: string,
): Promise<TenantRows[]> {
  const key = quoteIdent(shardKeyColumn);
  await client.query("begin isolation level repeatable read read only");
  try {
    await client.query(setLocalRenderingSql());
    const { rows } = await client.query<{ tenant: string; rows: string }>(
      `select format('%s', ${key}) as tenant, count(*) as rows from ${table.qualified}
       where ${key} is not null group by ${key} order by ${key}`,
    );
    return rows.map((r) => ({ tenant: r.tenant, rows: Number(r.rows) }));
  } finally {
    await client.query("commit");
  }
}

/**
 * Counts every sharded table of the plan's movement and stores the census, replacing an earlier
 * one; then records the time, which the supervisor reads as "census done". Safe to run twice.
 */
export async function runTenantCensus(planId: string): Promise<void> {
  const movement = await db().dataMovement.findUnique({ where: { planId } });
  if (!movement || movement.censusAt || !["running", "paused"].includes(movement.status)) return;
  // The movement this census counts for: a cancel and restart meanwhile makes a new one, which
  // gets its own census; this one then stops writing (checked in every table's transaction).
  const { startedAt } = movement;
  const ctx = await loadMovementContext(planId);
  const started = performance.now();
  // Held idle while each table's counts are written to the control plane: guarded, so a session
  // legacy ends meanwhile fails this census (retried) instead of the worker process.
  const source = await checkOut(ctx.source);
  let tenants = 0;
  let failed = false;
  try {
    const tables = ctx.schema.tables.filter((t) => t.kind === "sharded");
    for (const table of tables) {
      const counts = await countTenantRows(source, table, ctx.schema.shardKeyColumn);
      tenants = Math.max(tenants, counts.length);
      const before: number[] = [];
      let total = 0;
      for (const c of counts) {
        before.push(total);
        total += c.rows;
      }
      const current = await db().$transaction(async (tx) => {
        const still = await tx.dataMovement.findFirst({
          where: { planId, startedAt, status: { in: ["running", "paused"] } },
          select: { planId: true },
        });
        if (!still) return false;
        await tx.tenantCensus.deleteMany({ where: { planId, tableName: table.qualified } });
        // One statement of arrays: a table can have many thousands of tenants.
        await tx.$executeRaw`
          insert into tenant_census (plan_id, table_name, tenant_key, position, rows, rows_before)
          select ${planId}::uuid, ${table.qualified}, k, p - 1, r, b
          from unnest(${counts.map((c) => c.tenant)}::text[], ${counts.map((c) => c.rows)}::bigint[],
                      ${before}::bigint[]) with ordinality as u(k, r, b, p)`;
        // The exact count replaces the planner's estimate as the table's "rows to copy".
        await tx.backfillTask.updateMany({
          where: { planId, tableName: table.qualified, status: { not: "done" } },
          data: { rowsTotal: BigInt(total) },
        });
        return true;
      });
      if (!current) return;
    }
    const marked = await db().dataMovement.updateMany({
      where: { planId, startedAt, censusAt: null },
      data: { censusAt: new Date() },
    });
    if (marked.count === 0) return;
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    await recordEngineEvent(
      planId,
      "info",
      "census",
      `Counted the rows of ${tenants.toLocaleString("en-US")} tenants in ${tables.length} sharded tables in ${seconds} s: cohort progress is shown from now on.`,
    );
  } catch (error) {
    failed = true;
    const ended = connectionLost(source);
    const why = ended ? `legacy ended the census's connection (${ended.message})` : (error as Error).message;
    await recordEngineEvent(
      planId,
      "warn",
      "census",
      `Counting rows per tenant failed (retried shortly): ${why}`,
    ).catch(() => {});
    throw error;
  } finally {
    source.release(failed || connectionLost(source) !== undefined);
  }
}
