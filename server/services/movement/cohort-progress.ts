// Backfill progress per tenant cohort, read from the tenant census and the tables' checkpoints.
//
// Cohorts follow the plan's ladder (cohortPercents, e.g. 1, 5, 25, 100): tenants ranked by size,
// smallest first, cohort i holding the tenants up to its share of the count — the order in which
// they will be promoted. A tenant's rows of a table count as copied when the table is done, or when
// the tenant comes before the checkpoint's tenant in the table's copy order; the checkpoint's own
// tenant counts the rows the table copied past the tenants before it. Done in SQL on the control
// plane: a plan may have many tenants times many tables.
import { db } from "../../db";
import { ZPlanSettings } from "../../schemas/plan";

export interface CohortProgress {
  /** 1-based, in promotion order. */
  cohort: number;
  /** The cohort's upper bound on the ladder (share of all tenants). */
  percent: number;
  tenants: number;
  tenantsCopied: number;
  rowsTotal: number;
  rowsCopied: number;
  largestTenantRows: number;
}

export interface CohortsView {
  /** Null until the census has counted every sharded table. */
  countedAt: Date | null;
  tablesCounted: number;
  tablesToCount: number;
  cohorts: CohortProgress[];
}

const COHORT_PROGRESS_SQL = `
with census as (
  select c.table_name, c.tenant_key, c.position, c.rows, c.rows_before,
         t.status, t.rows_copied, t.last_key->>0 as checkpoint_tenant
  from tenant_census c
  join backfill_task t on t.plan_id = c.plan_id and t.table_name = c.table_name
  where c.plan_id = $1::uuid
),
checkpoint as (
  -- Where each table's checkpoint stands in its copy order (null: a tenant the census did not see).
  select t.table_name, k.position
  from backfill_task t
  left join tenant_census k
    on k.plan_id = t.plan_id and k.table_name = t.table_name and k.tenant_key = t.last_key->>0
  where t.plan_id = $1::uuid
),
copied as (
  select c.tenant_key, c.rows,
    case
      when c.status = 'done' then c.rows
      when c.checkpoint_tenant is null then 0
      when k.position is not null and c.position < k.position then c.rows
      when k.position is not null and c.position > k.position then 0
      else least(c.rows, greatest(0, c.rows_copied - c.rows_before))
    end as copied
  from census c join checkpoint k using (table_name)
),
tenants as (
  select tenant_key, sum(rows) as rows, sum(copied) as copied from copied group by tenant_key
),
ranked as (
  select t.*, row_number() over (order by t.rows, t.tenant_key collate "C") as rank, count(*) over () as n
  from tenants t
),
assigned as (
  select r.*,
    (select min(s.i) from unnest($2::int[]) with ordinality as s(pct, i)
     where r.rank <= ceil(r.n * s.pct / 100.0)) as cohort
  from ranked r
)
select cohort::int as cohort,
       count(*)::int as tenants,
       (count(*) filter (where copied >= rows))::int as tenants_copied,
       sum(rows)::float8 as rows_total,
       sum(copied)::float8 as rows_copied,
       max(rows)::float8 as largest_tenant_rows
from assigned group by cohort order by cohort`;

export async function getCohortProgress(planId: string): Promise<CohortsView> {
  const [plan, movement, tablesToCount, counted] = await Promise.all([
    db().plan.findUnique({ where: { id: planId }, select: { settings: true } }),
    db().dataMovement.findUnique({ where: { planId }, select: { censusAt: true } }),
    db().backfillTask.count({ where: { planId, kind: "sharded" } }),
    db().tenantCensus.groupBy({ by: ["tableName"], where: { planId } }),
  ]);
  const empty: CohortsView = { countedAt: null, tablesCounted: counted.length, tablesToCount, cohorts: [] };
  if (!plan || !movement?.censusAt) return empty;
  const percents = ZPlanSettings.parse(plan.settings).cohortPercents;
  const rows = await db().$queryRawUnsafe<
    {
      cohort: number;
      tenants: number;
      tenants_copied: number;
      rows_total: number;
      rows_copied: number;
      largest_tenant_rows: number;
    }[]
  >(COHORT_PROGRESS_SQL, planId, `{${percents.join(",")}}`);
  return {
    ...empty,
    countedAt: movement.censusAt,
    cohorts: rows.map((r) => ({
      cohort: r.cohort,
      percent: percents[r.cohort - 1] ?? 100,
      tenants: r.tenants,
      tenantsCopied: r.tenants_copied,
      rowsTotal: r.rows_total,
      rowsCopied: r.rows_copied,
      largestTenantRows: r.largest_tenant_rows,
    })),
  };
}
