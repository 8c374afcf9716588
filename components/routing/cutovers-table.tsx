"use client";

// The plan's recent cutover attempts (or the looked-up tenant's): who moved which tenant where,
// why, how it ended and how long its writes were paused.
//
// Server-side (DataTable's manual mode): a plan promoted cohort by cohort has thousands of
// attempts, so the server filters by the looked-up tenant and returns one page, newest or oldest
// first; only "Requested" sorts, by asking the server again.
import { useQuery } from "@tanstack/react-query";
import type { inferRouterOutputs } from "@trpc/server";
import { useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { Badge } from "@/components/ui/badge";
import { Card } from "@/components/ui/card";
import { type ColumnDef, DataTable, type SortingState } from "@/components/ui/data-table";
import { QueryState } from "@/components/ui/query-state";
import { Time } from "@/components/ui/time";
import type { AppRouter } from "@/server/trpc/root";
import { cutoverEnded, durationText, statusInfo } from "./cutover-words";

type CutoverListItem = inferRouterOutputs<AppRouter>["routing"]["cutovers"][number];

const LIMIT = 50;

const columns: ColumnDef<CutoverListItem>[] = [
  {
    id: "requested",
    header: "Requested",
    accessorFn: (c) => c.createdAt,
    cell: ({ row: { original: c } }) => <Time value={c.createdAt} compact />,
  },
  {
    id: "tenant",
    header: "Tenant",
    accessorFn: (c) => c.tenantKey,
    enableSorting: false,
    meta: { className: "font-mono" },
  },
  {
    id: "move",
    header: "Move",
    accessorFn: (c) => `${c.fromName} → ${c.toName}`,
    enableSorting: false,
  },
  {
    id: "status",
    header: "Status",
    accessorFn: (c) => c.status,
    enableSorting: false,
    cell: ({ row: { original: c } }) => {
      const info = statusInfo(c.status);
      return (
        <span title={info.meaning}>
          <Badge tone={info.tone}>{info.label}</Badge>
          {c.error ? (
            <span className="mt-0.5 block max-w-80 text-red-800" data-testid="cutover-error">
              {c.error}
            </span>
          ) : null}
        </span>
      );
    },
  },
  {
    id: "freeze",
    header: "Writes paused",
    accessorFn: (c) => c.freezeMs ?? -1,
    enableSorting: false,
    cell: ({ row: { original: c } }) => (c.freezeMs === null ? "—" : durationText(c.freezeMs)),
    meta: { align: "right" },
  },
  { id: "who", header: "Who", accessorFn: (c) => c.requestedByEmail, enableSorting: false },
  {
    id: "why",
    header: "Why",
    accessorFn: (c) => c.reason,
    enableSorting: false,
    meta: { className: "text-slate-600" },
  },
];

export function CutoversTable({ planId, tenantKey }: { planId: string; tenantKey: string | null }) {
  const trpc = useTRPC();
  const [sorting, setSorting] = useState<SortingState>([{ id: "requested", desc: true }]);
  const order = sorting[0]?.id === "requested" && !sorting[0].desc ? "oldest" : "newest";
  const cutovers = useQuery({
    ...trpc.routing.cutovers.queryOptions({ planId, tenantKey: tenantKey ?? undefined, limit: LIMIT, order }),
    // Faster while an attempt runs, so its steps show as they happen.
    refetchInterval: (query) => (query.state.data?.some((c) => !cutoverEnded(c.status)) ? 1_000 : 3_000),
  });
  const rows = cutovers.data ?? [];
  const which = order === "newest" ? "newest" : "oldest";
  return (
    <Card
      title="Cutovers"
      description={
        tenantKey
          ? `Attempts to move tenant ${tenantKey}, ${which} first. A cutover pauses the tenant's writes for at most its freeze budget; an aborted one changed nothing.`
          : `Attempts to move a tenant's writes to a new owner, the ${LIMIT} ${which} first. A cutover pauses the tenant's writes for at most its freeze budget; an aborted one changed nothing.`
      }
    >
      <QueryState isLoading={cutovers.isLoading} error={cutovers.error} what="the cutovers" />
      {cutovers.data ? (
        <DataTable
          data={rows}
          columns={columns}
          label="Cutovers"
          dense
          manual={{ sorting, onSortingChange: setSorting }}
          getRowId={(c) => c.id}
          rowTestId="cutover-row"
          empty={
            <span data-testid="cutovers-none">
              {tenantKey ? `No cutover of tenant ${tenantKey} yet.` : "No tenant has been cut over yet."}
            </span>
          }
        />
      ) : null}
    </Card>
  );
}
