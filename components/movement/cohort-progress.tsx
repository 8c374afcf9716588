"use client";

import { useQuery } from "@tanstack/react-query";
import { useTRPC } from "@/components/providers/trpc";
import { Badge } from "@/components/ui/badge";
import { Card } from "@/components/ui/card";
import { type ColumnDef, DataTable } from "@/components/ui/data-table";
import { Progress } from "@/components/ui/progress";
import { QueryState } from "@/components/ui/query-state";
import { Time } from "@/components/ui/time";

const nf = new Intl.NumberFormat();

interface CohortRow {
  cohort: number;
  /** the previous cohort's percent: this one holds tenants from–percent % */
  from: number;
  percent: number;
  tenants: number;
  tenantsCopied: number;
  rowsCopied: number;
  rowsTotal: number;
  largestTenantRows: number;
}

const columns: ColumnDef<CohortRow>[] = [
  {
    id: "cohort",
    header: "Cohort",
    accessorFn: (c) => c.cohort,
    cell: ({ row: { original: c } }) => (
      <>
        <span className="font-medium">Cohort {c.cohort}</span>{" "}
        <span className="text-slate-500">
          (tenants {c.from}–{c.percent}%)
        </span>
      </>
    ),
  },
  {
    id: "tenants",
    header: "Tenants copied",
    accessorFn: (c) => (c.tenants === 0 ? 1 : c.tenantsCopied / c.tenants),
    cell: ({ row: { original: c } }) => (
      <span className="tabular-nums">
        {c.tenantsCopied === c.tenants ? <Badge tone="ok">all copied</Badge> : null}{" "}
        {nf.format(c.tenantsCopied)} of {nf.format(c.tenants)}
      </span>
    ),
  },
  {
    id: "progress",
    header: "Rows copied",
    accessorFn: (c) => (c.rowsTotal === 0 ? 1 : c.rowsCopied / c.rowsTotal),
    cell: ({ row: { original: c } }) => (
      <Progress value={c.rowsCopied} total={c.rowsTotal} label={`Cohort ${c.cohort} progress`} />
    ),
    meta: { className: "w-1/3 pr-4" },
  },
  {
    id: "rows",
    header: "Rows",
    accessorFn: (c) => c.rowsTotal,
    cell: ({ row: { original: c } }) => `${nf.format(c.rowsCopied)} / ${nf.format(c.rowsTotal)}`,
    meta: { align: "right" },
  },
  {
    id: "largest",
    header: "Largest tenant",
    accessorFn: (c) => c.largestTenantRows,
    cell: ({ row: { original: c } }) => `${nf.format(c.largestTenantRows)} rows`,
    meta: { align: "right" },
  },
];

/** Backfill progress per tenant cohort (the plan's promotion ladder), from the tenant census. */
export function CohortProgress({ planId }: { planId: string }) {
  const trpc = useTRPC();
  const view = useQuery({ ...trpc.movement.cohorts.queryOptions({ planId }), refetchInterval: 2_000 });
  const v = view.data;
  const rows: CohortRow[] =
    v?.cohorts.map((c, i) => ({ ...c, from: i === 0 ? 0 : (v.cohorts[i - 1]?.percent ?? 0) })) ?? [];
  return (
    <Card
      title="Progress by tenant cohort"
      description="Cohorts follow the plan's promotion ladder: tenants ranked by rows, smallest first. A cohort is ready for its cutover once all its tenants are copied."
    >
      <QueryState isLoading={view.isLoading} error={view.error} what="the cohort progress" />
      {v && !v.countedAt ? (
        <p className="text-xs text-slate-600" data-testid="cohort-census">
          Counting rows per tenant on legacy ({v.tablesCounted} of {v.tablesToCount} sharded tables counted).
          Cohort progress shows once every table is counted; the copy itself does not wait for it.
        </p>
      ) : null}
      {v?.countedAt ? (
        <>
          <DataTable
            data={rows}
            columns={columns}
            label="Backfill progress by cohort"
            dense
            getRowId={(c) => String(c.cohort)}
            rowTestId="cohort-row"
            empty="No cohort: the ladder has no step."
          />
          <p className="mt-2 text-xs text-slate-500">
            Rows per tenant counted <Time value={v.countedAt} />; rows written since are copied but not
            counted here.
          </p>
        </>
      ) : null}
    </Card>
  );
}
