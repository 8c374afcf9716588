"use client";

// Where the plan's tenants are now — on legacy, cutting over, on shards — as tenant and row
// counts, with the largest tenants of each side listed in the console's one table. Shown on the
// plan's overview (full) and at the top of the cohorts page (compact: "what is on the shards now").
import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { Card } from "@/components/ui/card";
import { type ColumnDef, DataTable } from "@/components/ui/data-table";
import { QueryState } from "@/components/ui/query-state";

const nf = new Intl.NumberFormat();

const SIDES = [
  { key: "legacy", title: "On legacy" },
  { key: "cuttingOver", title: "Cutting over" },
  { key: "onShards", title: "On shards" },
] as const;

interface Listed {
  tenant: string;
  rows: number;
  state: string;
  side: string;
}

const columns: ColumnDef<Listed, unknown>[] = [
  { id: "tenant", header: "Tenant", accessorFn: (r) => r.tenant, meta: { className: "font-mono" } },
  { id: "side", header: "Where", accessorFn: (r) => r.side },
  { id: "state", header: "State", accessorFn: (r) => r.state.replace("_", " ") },
  {
    id: "rows",
    header: "Rows",
    accessorFn: (r) => r.rows,
    cell: (c) => nf.format(c.getValue() as number),
    meta: { align: "right" },
    enableGlobalFilter: false,
  },
];

export function TenantPlacementCard({ planId, compact = false }: { planId: string; compact?: boolean }) {
  const trpc = useTRPC();
  const [filter, setFilter] = useState("");
  const placement = useQuery({
    ...trpc.cohorts.placement.queryOptions({ planId, limit: compact ? 0 : 20 }),
    refetchInterval: 5_000,
  });
  const data = placement.data;
  const listed: Listed[] = data
    ? SIDES.flatMap((s) => data[s.key].listed.map((t) => ({ ...t, side: s.title })))
    : [];
  return (
    <Card
      title={compact ? "On the shards now" : "Where the tenants are"}
      description={
        compact
          ? "Every tenant the census counted, by where the routing map sends it now."
          : "Tenants and their rows by where the routing map sends them now (the largest of each side listed)."
      }
    >
      <QueryState isLoading={placement.isLoading} error={placement.error} what="the tenants' placement" />
      {data ? (
        <>
          <dl className="grid grid-cols-3 gap-4" data-testid="tenant-placement">
            {SIDES.map((s) => (
              <PlacementFigure
                key={s.key}
                side={s.key}
                title={s.title}
                figure={data[s.key]}
                total={data.total}
              />
            ))}
          </dl>
          {compact ? null : (
            <div className="mt-3 space-y-2">
              <input
                type="search"
                aria-label="Filter the listed tenants"
                placeholder="Filter tenants"
                className="w-56 rounded border border-slate-300 px-2 py-1 text-xs"
                value={filter}
                onChange={(e) => setFilter(e.target.value)}
              />
              <DataTable
                data={listed}
                columns={columns}
                label="Tenants by placement"
                filter={filter}
                getRowId={(r) => r.tenant}
                rowTestId="placement-row"
                initialSorting={[{ id: "rows", desc: true }]}
                empty="No tenant yet: the census has not run."
              />
            </div>
          )}
        </>
      ) : null}
    </Card>
  );
}

function PlacementFigure({
  side,
  title,
  figure,
  total,
}: {
  side: string;
  title: string;
  figure: { tenants: number; rows: number };
  total: number;
}) {
  const share = total > 0 ? Math.round((figure.tenants / total) * 1000) / 10 : 0;
  return (
    <div className="rounded border border-slate-200 px-3 py-2" data-testid={`placement-${side}`}>
      <dt className="text-xs text-slate-500">{title}</dt>
      <dd className="text-lg font-semibold tabular-nums">
        {nf.format(figure.tenants)}
        <span className="ml-1 text-xs font-normal text-slate-500">
          tenants ({share}%) · {nf.format(figure.rows)} rows
        </span>
      </dd>
    </div>
  );
}
