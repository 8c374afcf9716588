// Backfill progress per tenant cohort, read from the tenant census and the tables' checkpoints.
//
// Cohorts follow the plan's drawn ladder (cohort_member, server/services/cohorts/cohorts.ts) once it
// is drawn. Before that, the ladder the plan's steps would draw by default (cohortPercents, e.g. 1,
// 5, 25, 100): tenants ranked by size, smallest first, cohort i holding the tenants up to its share
// of the count — re-ranked on every read, which is why a ladder is drawn and stored before promotion.
// A tenant's rows of a table count as copied when the table is done, or when the tenant comes before the checkpoint's tenant in the table's copy order; the checkpoint's own
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

// One pass over the plan's census, never a join of the census with itself: right after the census
// job writes a new plan's rows the statistics have not seen its plan id, the planner expects one row,
// and a self-join (to find each table's checkpoint tenant) became a nested loop that re-read the
// whole census once per census row — minutes of a core for 2,000 tenants, while the backfill page
// polled it beside the movement's status (cohort-progress-plan.test.ts). The checkpoint's place in
// its table's copy order is a window aggregate over the same rows instead.
/**
 * Rows and copied rows per tenant of plan $1 (one row per tenant the census counted): the CTEs both
 * the ladder's progress and the cohorts page start from.
 */
export const TENANT_ROWS_CTES = `
with census as (
  select c.tenant_key, c.position, c.rows, c.rows_before,
         t.status, t.rows_copied, t.last_key->>0 as checkpoint_tenant,
         -- Where the table's checkpoint stands in its copy order (null: a tenant the census did not see).
         max(c.position) filter (where c.tenant_key = t.last_key->>0)
           over (partition by c.table_name) as checkpoint_position
  from tenant_census c
  join backfill_task t on t.plan_id = c.plan_id and t.table_name = c.table_name
  where c.plan_id = $1::uuid
),
copied as (
  select tenant_key, rows,
    case
      when status = 'done' then rows
      when checkpoint_tenant is null then 0
      when checkpoint_position is not null and position < checkpoint_position then rows
      when checkpoint_position is not null and position > checkpoint_position then 0
      else least(rows, greatest(0, rows_copied - rows_before))
    end as copied
  from census
),
tenants as (
  select tenant_key, sum(rows) as rows, sum(copied) as copied from copied group by tenant_key
)`;

const COHORT_TOTALS = `
select cohort::int as cohort,
       count(*)::int as tenants,
       (count(*) filter (where copied >= rows))::int as tenants_copied,
       sum(rows)::float8 as rows_total,
       sum(copied)::float8 as rows_copied,
       max(rows)::float8 as largest_tenant_rows
from assigned where cohort is not null group by cohort order by cohort`;

/** No ladder drawn yet: the cohorts it would draw by default, ranked by size each time. */
const COHORT_PROGRESS_SQL = `${TENANT_ROWS_CTES},
ranked as (
  select t.*, row_number() over (order by t.rows, t.tenant_key collate "C") as rank, count(*) over () as n
  from tenants t
),
assigned as (
  select r.*,
    (select min(s.i) from unnest($2::int[]) with ordinality as s(pct, i)
     where r.rank <= ceil(r.n * s.pct / 100.0)) as cohort
  from ranked r
)${COHORT_TOTALS}`;

/**
 * The drawn ladder (cohort_member): each tenant in its smallest cohort, held tenants in none, and a
 * tenant the census found after the draw in the last cohort (as placeNewTenants will store it).
 */
const DRAWN_COHORT_PROGRESS_SQL = `${TENANT_ROWS_CTES},
members as (select tenant_key, ordinal from cohort_member where plan_id = $1::uuid),
assigned as (
  select coalesce(t.tenant_key, m.tenant_key) as tenant_key,
         coalesce(t.rows, 0) as rows, coalesce(t.copied, 0) as copied,
         case when m.tenant_key is null
              then (select max(ordinal) from cohort where plan_id = $1::uuid)
              else m.ordinal end as cohort
  from tenants t full join members m on m.tenant_key = t.tenant_key
)${COHORT_TOTALS}`;

/** The cohorts of a plan's ladder (`percents`), from its census and its tables' checkpoints. */
/**
 * The share each drawn step stands for on the progress bar: its percentage, or for a count or list
 * step the one before it (shown as a step of the same share), the last always 100.
 */
function drawnPercents(policies: { kind?: string; value?: number }[]): number[] {
  let previous = 0;
  return policies.map((p, i) => {
    if (i === policies.length - 1) return 100;
    if (p.kind === "percent" && typeof p.value === "number") previous = p.value;
    return previous;
  });
}

export function cohortProgressSql(
  planId: string,
  percents: readonly number[],
): { text: string; values: unknown[] } {
  return { text: COHORT_PROGRESS_SQL, values: [planId, `{${percents.join(",")}}`] };
}

/** The drawn ladder's progress query. */
export function drawnCohortProgressSql(planId: string): { text: string; values: unknown[] } {
  return { text: DRAWN_COHORT_PROGRESS_SQL, values: [planId] };
}

export async function getCohortProgress(planId: string): Promise<CohortsView> {
  const [plan, movement, tablesToCount, counted, drawn] = await Promise.all([
    db().plan.findUnique({ where: { id: planId }, select: { settings: true } }),
    db().dataMovement.findUnique({ where: { planId }, select: { censusAt: true } }),
    db().backfillTask.count({ where: { planId, kind: "sharded" } }),
    db().tenantCensus.groupBy({ by: ["tableName"], where: { planId } }),
    db().cohort.findMany({
      where: { planId },
      orderBy: { ordinal: "asc" },
      select: { ordinal: true, policy: true },
    }),
  ]);
  const empty: CohortsView = { countedAt: null, tablesCounted: counted.length, tablesToCount, cohorts: [] };
  if (!plan || !movement?.censusAt) return empty;
  // A drawn ladder is the truth from its draw on; before it, today's ranking by the plan's steps.
  const percents =
    drawn.length > 0
      ? drawnPercents(drawn.map((c) => c.policy as { kind?: string; value?: number }))
      : ZPlanSettings.parse(plan.settings).cohortPercents;
  const query = drawn.length > 0 ? drawnCohortProgressSql(planId) : cohortProgressSql(planId, percents);
  const rows = await db().$queryRawUnsafe<
    {
      cohort: number;
      tenants: number;
      tenants_copied: number;
      rows_total: number;
      rows_copied: number;
      largest_tenant_rows: number;
    }[]
  >(query.text, ...query.values);
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
