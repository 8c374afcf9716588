"use client";

// One tenant's parity, table by table: what a cohort gate reads before promoting the tenant.
import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { Alert } from "@/components/ui/alert";
import { Badge } from "@/components/ui/badge";
import { Card } from "@/components/ui/card";
import { messageOf } from "@/components/ui/field-errors";
import { TenantKeyForm } from "@/components/ui/tenant-key-form";
import { Time } from "@/components/ui/time";

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
          <table className="w-full text-left text-xs">
            <thead className="text-slate-500">
              <tr>
                <th className="py-1 font-medium">Table</th>
                <th className="py-1 font-medium">State</th>
                <th className="py-1 text-right font-medium">Open mismatches</th>
                <th className="py-1 pl-6 font-medium">Changed since the last recent check</th>
              </tr>
            </thead>
            <tbody className="divide-y divide-slate-100">
              {t.tables.map((row) => (
                <tr key={row.table} data-testid="tenant-parity-table">
                  <td className="py-1.5 font-mono">{plain(row.table)}</td>
                  <td className="py-1.5">
                    <StateBadge state={row.state} reason={row.unverifiedReason} />
                    {row.unverifiedReason ? (
                      <span className="ml-2 text-slate-600">{row.unverifiedReason}</span>
                    ) : null}
                  </td>
                  <td className="py-1.5 text-right tabular-nums">{row.openMismatches}</td>
                  <td className="py-1.5 pl-6">
                    {row.changedSince ? <Time value={row.changedSince} /> : "—"}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </Card>
  );
}
