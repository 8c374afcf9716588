"use client";

import { useQuery } from "@tanstack/react-query";
import type { inferRouterOutputs } from "@trpc/server";
import { useState } from "react";
import { fitWindow } from "@/components/charts/chart-window";
import { LagChart } from "@/components/charts/lag-chart";
import { TimeSeriesChart } from "@/components/charts/time-series-chart";
import { WindowSelect } from "@/components/charts/window-select";
import { lagText } from "@/components/plans/figure-badges";
import { PlanHeader } from "@/components/plans/plan-header";
import { PlanQueryState } from "@/components/plans/plan-query-state";
import { usePlan } from "@/components/plans/use-plan";
import { useChartMarkers, usePlanFigures } from "@/components/plans/use-plan-figures";
import { useTRPC } from "@/components/providers/trpc";
import { Badge, type Tone } from "@/components/ui/badge";
import { Card } from "@/components/ui/card";
import { type ColumnDef, DataTable } from "@/components/ui/data-table";
import { Progress } from "@/components/ui/progress";
import { QueryState } from "@/components/ui/query-state";
import { Time, useNow } from "@/components/ui/time";
import type { AppRouter } from "@/server/trpc/root";
import { CohortProgress } from "./cohort-progress";
import { MovementControls } from "./movement-controls";
import { backfillRateSeries, namedSeries } from "./series";

const nf = new Intl.NumberFormat();

const STATUS_TONE: Record<string, Tone> = {
  running: "info",
  paused: "warn",
  preparing: "info",
  cancelling: "warn",
  cancelled: "neutral",
  failed: "danger",
  done: "ok",
  pending: "neutral",
};

type Task = NonNullable<inferRouterOutputs<AppRouter>["figures"]["plan"]["backfill"]>["tasks"][number];

const TASK_COLUMNS: ColumnDef<Task>[] = [
  {
    id: "table",
    header: "Table",
    accessorFn: (t) => t.table.replaceAll('"', ""),
    meta: { className: "font-mono" },
  },
  {
    id: "kind",
    header: "Kind",
    accessorFn: (t) => (t.kind === "reference" ? "reference (every shard)" : "sharded"),
  },
  {
    id: "status",
    header: "Status",
    accessorFn: (t) => t.status,
    cell: ({ row: { original: t } }) => <Badge tone={STATUS_TONE[t.status] ?? "neutral"}>{t.status}</Badge>,
  },
  {
    id: "progress",
    header: "Progress",
    accessorFn: (t) => (t.rowsTotal > 0 ? t.rowsCopied / t.rowsTotal : 0),
    cell: ({ row: { original: t } }) => (
      <Progress value={t.rowsCopied} total={t.rowsTotal} label={`${t.table} progress`} />
    ),
    meta: { className: "w-1/4 pr-4" },
  },
  {
    id: "rows",
    header: "Rows",
    accessorFn: (t) => t.rowsTotal,
    cell: ({ row: { original: t } }) => `${nf.format(t.rowsCopied)} / ${nf.format(t.rowsTotal)}`,
    meta: { align: "right" },
  },
  // A rate only while the table copies: none once done or while paused.
  {
    id: "rate",
    header: "Rate",
    accessorFn: (t) => t.rowsPerSecond ?? -1,
    cell: ({ row: { original: t } }) =>
      t.rowsPerSecond !== null ? `${nf.format(Math.round(t.rowsPerSecond))} rows/s` : "—",
    meta: { align: "right" },
  },
  {
    id: "eta",
    header: "ETA",
    accessorFn: (t) => (t.status === "done" ? -1 : (t.eta?.likely ?? Number.MAX_SAFE_INTEGER)),
    cell: ({ row: { original: t } }) => (t.status === "done" ? "done" : (t.eta?.text ?? "—")),
    meta: { align: "right" },
  },
];

export function BackfillPage({ planId }: { planId: string }) {
  const trpc = useTRPC();
  const plan = usePlan(planId);
  const [minutes, setMinutes] = useState(15);
  const status = useQuery({
    ...trpc.movement.status.queryOptions({ planId, minutes }),
    refetchInterval: 2_000,
  });
  // Figures (rows, rates, ETAs, lag) come from the one source the header reads too; the status
  // query serves the charts' samples, the events and the controls.
  const figures = usePlanFigures(planId).data;
  const markers = useChartMarkers(planId, minutes).data;
  const now = useNow();
  if (!plan.data) return <PlanQueryState planId={planId} isLoading={plan.isLoading} error={plan.error} />;
  const s = status.data;
  const rates = s ? backfillRateSeries(s.samples) : [];
  const lag = s ? namedSeries(s.samples, "cdc.lag_ms") : [];
  const reverseLag = s ? namedSeries(s.samples, "cdc.reverse_lag_ms") : [];
  const domain = fitWindow(
    [...rates, ...lag, ...reverseLag].map((p) => p.t),
    minutes,
    Math.max(Date.now(), rates.at(-1)?.t ?? 0, lag.at(-1)?.t ?? 0, reverseLag.at(-1)?.t ?? 0),
  );
  const b = figures?.backfill;

  return (
    <>
      <PlanHeader plan={plan.data} />
      <div className="space-y-4">
        <QueryState isLoading={status.isLoading} error={status.error} what="the data movement" />
        {s ? (
          <MovementControls
            planId={planId}
            status={s}
            phase={plan.data.phase}
            rate={plan.data.settings.backfillRowsPerSecond}
            cancel={plan.data.movementCancel}
          />
        ) : null}
        {s?.movement && b && figures ? (
          <>
            <Card
              title="Backfill progress"
              description={`${b.tablesDone} of ${b.tables} tables done. Rows copied are counted as chunks commit on the shards.`}
            >
              <div className="mb-3 grid grid-cols-4 gap-3 text-sm">
                <Stat
                  label="Rows copied"
                  value={`${nf.format(b.rowsCopied)} of ~${nf.format(b.rowsTotal)}`}
                />
                <Stat
                  label="Copy rate"
                  value={
                    b.rowsPerSecond !== null
                      ? `${nf.format(Math.round(b.rowsPerSecond))} rows/s`
                      : b.done
                        ? "Done"
                        : figures.movementStatus === "paused"
                          ? "Paused"
                          : "—"
                  }
                />
                <Stat
                  label="ETA"
                  value={
                    b.done
                      ? "Done"
                      : b.eta
                        ? b.eta.text
                        : figures.movementStatus === "paused"
                          ? "Paused"
                          : figures.movementStatus === "running"
                            ? "Estimating…"
                            : "—"
                  }
                />
                <Stat label="CDC lag" value={lagText(figures.lag, now)} />
              </div>
              <Progress value={b.rowsCopied} total={b.rowsTotal} label="Overall backfill progress" />
              <div className="mt-4">
                <DataTable
                  data={b.tasks}
                  columns={TASK_COLUMNS}
                  label="Backfill per table"
                  dense
                  getRowId={(t) => t.table}
                  rowTestId="backfill-task"
                  empty="No table to copy."
                />
              </div>
            </Card>
            <CohortProgress planId={planId} />
            <Card
              title="Throughput and lag"
              actions={<WindowSelect id="window" minutes={minutes} onChange={setMinutes} />}
            >
              <div className="grid grid-cols-2 gap-4">
                <div>
                  <h3 className="text-xs font-medium text-slate-700">
                    Backfill copy rate (rows/s, all tables)
                  </h3>
                  <TimeSeriesChart
                    points={rates}
                    domain={domain}
                    markers={markers}
                    unit="rows/s"
                    label="Backfill rows per second"
                    empty="No copy activity in this window."
                  />
                </div>
                <div>
                  <h3 className="text-xs font-medium text-slate-700">
                    CDC lag (commit on one side → applied on the other)
                  </h3>
                  <LagChart
                    forward={lag}
                    reverse={reverseLag}
                    domain={domain}
                    markers={markers}
                    height={192}
                  />
                </div>
              </div>
            </Card>
            <Card title="Engine events" description="Errors, back-offs and stops the engine reported.">
              {s.events.length === 0 ? (
                <p className="text-xs text-slate-500">Nothing to report.</p>
              ) : (
                <ul className="space-y-1 text-xs">
                  {s.events.map((e) => (
                    <li key={e.id} className="flex gap-2">
                      <Badge tone={e.level === "error" ? "danger" : e.level === "warn" ? "warn" : "neutral"}>
                        {e.level}
                      </Badge>
                      <span className="text-slate-500">
                        <Time value={e.at} />
                      </span>
                      <span className="font-mono text-slate-600">{e.source}</span>
                      <span>{e.message}</span>
                    </li>
                  ))}
                </ul>
              )}
            </Card>
          </>
        ) : null}
      </div>
    </>
  );
}

function Stat({ label, value }: { label: string; value: string }) {
  return (
    <div className="rounded-md border border-slate-200 px-3 py-2">
      <p className="text-xs text-slate-500">{label}</p>
      <p
        className="font-medium tabular-nums"
        data-testid={`stat-${label.toLowerCase().replaceAll(" ", "-")}`}
      >
        {value}
      </p>
    </div>
  );
}
