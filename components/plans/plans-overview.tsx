"use client";

// The fleet view a TPM opens every morning: every plan with its phase, what it is doing in words
// and colour, progress and ETA, forward CDC lag, parity, breaker and tenants on shards — the same
// figures (server/services/plans/figures.ts) the plan's own pages show — sortable by each.
import { useQuery } from "@tanstack/react-query";
import type { inferRouterOutputs } from "@trpc/server";
import Link from "next/link";
import { useMemo, useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { useRoleBlock } from "@/components/providers/user";
import { Badge, type Tone } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, PageTitle } from "@/components/ui/card";
import { type ColumnDef, DataTable } from "@/components/ui/data-table";
import { TextInput } from "@/components/ui/field";
import { QueryState } from "@/components/ui/query-state";
import { Time } from "@/components/ui/time";
import { PLAN_PHASES } from "@/server/schemas/plan";
import type { AppRouter } from "@/server/trpc/root";
import { BreakerBadge, isStreaming, LagBadge, PlanProgress } from "./figure-badges";
import { ParityIndicator } from "./parity-indicator";
import { PhaseBadge } from "./phase";

type FleetRow = inferRouterOutputs<AppRouter>["figures"]["fleet"][number];
const nf = new Intl.NumberFormat();

/** What the plan is doing, in words and colour; `rank` sorts the worst first. */
function activity(row: FleetRow): { word: string; tone: Tone; rank: number } {
  if (row.status === "archived") return { word: "Archived", tone: "neutral", rank: 9 };
  const f = row.figures;
  switch (f.movementStatus) {
    case "failed":
      return { word: "Stopped: error", tone: "danger", rank: 0 };
    case "paused":
      return { word: "Paused", tone: "warn", rank: 2 };
    case "cancelling":
      return { word: "Cancelling", tone: "warn", rank: 3 };
    case "preparing":
      return { word: "Preparing", tone: "info", rank: 4 };
    case "running":
      return f.backfill.done
        ? { word: "Streaming (CDC)", tone: "ok", rank: 5 }
        : { word: "Copying", tone: "info", rank: 4 };
    case "cancelled":
      return { word: "Cancelled", tone: "neutral", rank: 7 };
    default:
      return { word: "Not started", tone: "neutral", rank: 8 };
  }
}

const PARITY_RANK = { drift: 0, unverified: 1, unchecked: 2, clean: 3 } as const;

const columns: ColumnDef<FleetRow>[] = [
  {
    id: "name",
    header: "Plan",
    accessorFn: (r) => r.name,
    cell: ({ row: { original: r } }) => (
      <div>
        <Link href={`/plans/${r.id}`} className="font-medium text-sky-800 hover:underline">
          {r.name}
        </Link>
        <p className="text-xs text-slate-500">
          {r.source.name} → {r.shards.length} shard{r.shards.length === 1 ? "" : "s"} · key{" "}
          <code className="font-mono">{r.shardKeyColumn}</code>
        </p>
      </div>
    ),
  },
  {
    id: "phase",
    header: "Phase",
    accessorFn: (r) => PLAN_PHASES.indexOf(r.phase),
    enableGlobalFilter: false,
    cell: ({ row: { original: r } }) => <PhaseBadge phase={r.phase} status={r.status} />,
  },
  {
    id: "status",
    header: "Status",
    accessorFn: (r) => activity(r).rank,
    enableGlobalFilter: false,
    cell: ({ row: { original: r } }) => {
      const a = activity(r);
      return <Badge tone={a.tone}>{a.word}</Badge>;
    },
  },
  {
    id: "progress",
    header: "Progress",
    // Not started sorts below 0%.
    accessorFn: (r) => r.figures.progress.fraction ?? (r.figures.progress.stage === "cutover" ? 1 : -1),
    enableGlobalFilter: false,
    cell: ({ row: { original: r } }) => (
      <PlanProgress figures={r.figures} label={`${r.name} progress`} withEta={false} />
    ),
    meta: { className: "w-56" },
  },
  {
    id: "eta",
    header: "ETA",
    // No ETA sorts last either way.
    accessorFn: (r) => r.figures.progress.eta?.likely,
    sortUndefined: "last",
    enableGlobalFilter: false,
    cell: ({ row: { original: r } }) => (
      <span className="text-xs" data-testid="fleet-eta">
        {r.figures.progress.eta?.text ?? (r.figures.progress.stage === "backfill" ? "estimating…" : "—")}
      </span>
    ),
  },
  {
    id: "lag",
    header: "Forward lag",
    accessorFn: (r) => (r.figures.lag.state === "measured" ? r.figures.lag.ms : undefined),
    sortUndefined: "last",
    enableGlobalFilter: false,
    cell: ({ row: { original: r } }) => (
      <span data-testid="fleet-lag">
        <LagBadge lag={r.figures.lag} thresholdMs={r.settings.cdcLagThresholdMs} />
      </span>
    ),
  },
  {
    id: "parity",
    header: "Parity",
    accessorFn: (r) => PARITY_RANK[r.figures.parity.state],
    enableGlobalFilter: false,
    cell: ({ row: { original: r } }) => (
      <span data-testid="fleet-parity">
        <ParityIndicator parity={r.figures.parity} streaming={isStreaming(r.figures.lag)} />
      </span>
    ),
  },
  {
    id: "breaker",
    header: "Breaker",
    enableSorting: false,
    enableGlobalFilter: false,
    cell: ({ row: { original: r } }) => <BreakerBadge breaker={r.figures.breaker} />,
  },
  {
    id: "tenants",
    header: "Tenants on shards",
    accessorFn: (r) => r.figures.tenants.onShards,
    enableGlobalFilter: false,
    meta: { align: "right" },
    cell: ({ row: { original: r } }) => (
      <span
        className="text-xs"
        title="Tenants on a shard of those the census counted: they move at cutover, from the Routing or Cohorts page."
      >
        {nf.format(r.figures.tenants.onShards)}
        {r.figures.tenants.total !== null ? ` of ${nf.format(r.figures.tenants.total)}` : ""}
      </span>
    ),
  },
  {
    id: "updated",
    header: "Updated",
    accessorFn: (r) => new Date(r.updatedAt).getTime(),
    enableGlobalFilter: false,
    meta: { className: "text-xs text-slate-600" },
    cell: ({ row: { original: r } }) => <Time value={r.updatedAt} compact />,
  },
];

export function PlansOverview() {
  const trpc = useTRPC();
  const [includeArchived, setIncludeArchived] = useState(false);
  const [filter, setFilter] = useState("");
  const fleet = useQuery({
    ...trpc.figures.fleet.queryOptions({ includeArchived }),
    refetchInterval: 5_000,
  });
  const blocked = useRoleBlock("operator");
  const rows = useMemo(() => fleet.data ?? [], [fleet.data]);
  const shown = rows.filter((p) => p.name.toLowerCase().includes(filter.trim().toLowerCase())).length;

  return (
    <>
      <PageTitle
        title="Migration plans"
        subtitle="Each plan moves the tenants of one legacy database onto shards, step by step through DATA-BALANCE, with writes running throughout."
        actions={
          blocked ? (
            <Button variant="primary" disabledReason={blocked}>
              New plan
            </Button>
          ) : (
            <Link
              href="/plans/new"
              className="rounded-md border border-sky-700 bg-sky-700 px-3 py-1.5 text-sm font-medium text-white hover:bg-sky-800"
            >
              New plan
            </Link>
          )
        }
      />
      <Card
        title={`${shown} plan${shown === 1 ? "" : "s"}`}
        description="Live figures, refreshed every 5 s. Click a column to sort."
        actions={
          <>
            <label className="sr-only" htmlFor="plan-filter">
              Filter plans by name
            </label>
            <TextInput
              id="plan-filter"
              placeholder="Filter by name"
              value={filter}
              onChange={(e) => setFilter(e.target.value)}
              className="w-48"
            />
            <label className="flex items-center gap-1.5 text-xs text-slate-600">
              <input
                type="checkbox"
                checked={includeArchived}
                onChange={(e) => setIncludeArchived(e.target.checked)}
              />
              Show archived
            </label>
          </>
        }
      >
        <QueryState isLoading={fleet.isLoading} error={fleet.error} what="plans" />
        {fleet.data ? (
          <DataTable
            data={rows}
            columns={columns}
            label="Migration plans"
            filter={filter.trim()}
            getRowId={(r) => r.id}
            rowTestId="fleet-row"
            empty={
              rows.length === 0
                ? "No plans yet. Create one to start moving tenants from the legacy database to shards."
                : "No plan matches the filter."
            }
          />
        ) : null}
      </Card>
    </>
  );
}
