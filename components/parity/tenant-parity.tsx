"use client";

// One tenant's parity, table by table: what a cohort gate reads before promoting the tenant.
import { useQuery } from "@tanstack/react-query";
import type { inferRouterOutputs } from "@trpc/server";
import { useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { Alert } from "@/components/ui/alert";
import { Badge } from "@/components/ui/badge";
import { Card } from "@/components/ui/card";
import { type ColumnDef, DataTable } from "@/components/ui/data-table";
import { messageOf } from "@/components/ui/field-errors";
import { TenantKeyForm } from "@/components/ui/tenant-key-form";
import { Time } from "@/components/ui/time";
import type { AppRouter } from "@/server/trpc/root";

const plain = (table: string) => table.replaceAll('"', "");

function StateBadge({
  state,
  reason,
}: {
  state: "clean" | "drift" | "unverified" | "unchecked";
  reason?: string | null;
}) {
  if (state === "drift") return <Badge tone="danger">Drift</Badge>;
  if (state === "clean") return <Badge tone="ok">Clean</Badge>;
  if (state === "unverified")
    return (
      <span title={reason ?? undefined}>
        <Badge tone="warn">Not every row verified</Badge>
      </span>
    );
  return <Badge tone="neutral">Not checked yet</Badge>;
}

type TableParity = inferRouterOutputs<AppRouter>["parity"]["tenant"]["tables"][number];
const STATE_ORDER = { drift: 0, unverified: 1, unchecked: 2, clean: 3 } as const;

const columns: ColumnDef<TableParity>[] = [
  { id: "table", header: "Table", accessorFn: (r) => plain(r.table), meta: { className: "font-mono" } },
  {
    id: "state",
    header: "State",
    accessorFn: (r) => STATE_ORDER[r.state],
    cell: ({ row: { original: r } }) => (
      <>
        <StateBadge state={r.state} reason={r.unverifiedReason} />
        {r.unverifiedReason ? <span className="ml-2 text-slate-600">{r.unverifiedReason}</span> : null}
      </>
    ),
  },
  {
    id: "open",
    header: "Open mismatches",
    accessorFn: (r) => r.openMismatches,
    meta: { align: "right" },
  },
  {
    id: "changed",
    header: "Changed since the last recent check",
    accessorFn: (r) => (r.changedSince ? new Date(r.changedSince).getTime() : 0),
    cell: ({ row: { original: r } }) => (r.changedSince ? <Time value={r.changedSince} /> : "—"),
    meta: { className: "pl-6" },
  },
];

export function TenantParity({ planId }: { planId: string }) {
  const trpc = useTRPC();
  const [tenant, setTenant] = useState<string | null>(null);
  const result = useQuery({
    ...trpc.parity.tenant.queryOptions({ planId, tenant: tenant ?? "" }),
    enabled: tenant !== null,
    refetchInterval: 5_000,
  });
  const t = result.data;

  return (
    <Card
      title="A tenant's parity"
      description="Table by table, as the cohort gates read it: clean once a full check verified every row of the tenant and found nothing open. Every full check covers every tenant."
    >
      <TenantKeyForm id="tenant-key" buttonLabel="Show" onLookup={setTenant} />
      {result.error ? (
        <div className="mt-3">
          <Alert tone="error">{messageOf(result.error)}</Alert>
        </div>
      ) : null}
      {t ? (
        <div className="mt-3 space-y-2" data-testid="tenant-parity">
          <p className="flex flex-wrap items-center gap-2 text-xs text-slate-600">
            <span>
              Tenant <span className="font-mono">{t.tenant}</span> lives on shard {t.shard + 1}.
            </span>
            <StateBadge state={t.state} />
            {t.lastFullCheckAt ? (
              <span>
                Last full check <Time value={t.lastFullCheckAt} />.
              </span>
            ) : null}
          </p>
          <DataTable
            data={t.tables}
            columns={columns}
            label={`Tenant ${t.tenant}'s parity per table`}
            dense
            getRowId={(row) => row.table}
            rowTestId="tenant-parity-table"
            empty="No sharded table."
          />
        </div>
      ) : null}
    </Card>
  );
}
