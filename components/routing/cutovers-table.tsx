"use client";

// The plan's recent cutover attempts (or the looked-up tenant's): who moved which tenant where,
// why, how it ended and how long its writes were paused.
import { useQuery } from "@tanstack/react-query";
import { useTRPC } from "@/components/providers/trpc";
import { Badge } from "@/components/ui/badge";
import { Card } from "@/components/ui/card";
import { QueryState } from "@/components/ui/query-state";
import { Time } from "@/components/ui/time";
import { cutoverEnded, durationText, statusInfo } from "./cutover-words";

export function CutoversTable({ planId, tenantKey }: { planId: string; tenantKey: string | null }) {
  const trpc = useTRPC();
  const cutovers = useQuery({
    ...trpc.routing.cutovers.queryOptions({ planId, tenantKey: tenantKey ?? undefined, limit: 50 }),
    // Faster while an attempt runs, so its steps show as they happen.
    refetchInterval: (query) => (query.state.data?.some((c) => !cutoverEnded(c.status)) ? 1_000 : 3_000),
  });
  const rows = cutovers.data ?? [];
  return (
    <Card
      title="Cutovers"
      description={
        tenantKey
          ? `Attempts to move tenant ${tenantKey}, newest first. A cutover pauses the tenant's writes for at most its freeze budget; an aborted one changed nothing.`
          : "Recent attempts to move a tenant's writes to a new owner, newest first. A cutover pauses the tenant's writes for at most its freeze budget; an aborted one changed nothing."
      }
    >
      <QueryState isLoading={cutovers.isLoading} error={cutovers.error} what="the cutovers" />
      {cutovers.data && rows.length === 0 ? (
        <p className="text-xs text-slate-600" data-testid="cutovers-none">
          {tenantKey ? `No cutover of tenant ${tenantKey} yet.` : "No tenant has been cut over yet."}
        </p>
      ) : null}
      {rows.length > 0 ? (
        <table className="w-full text-left text-xs" aria-label="Cutovers">
          <thead className="text-slate-500">
            <tr>
              <th className="py-1 font-medium">Requested</th>
              <th className="py-1 font-medium">Tenant</th>
              <th className="py-1 font-medium">Move</th>
              <th className="py-1 font-medium">Status</th>
              <th className="py-1 text-right font-medium">Writes paused</th>
              <th className="py-1 pl-3 font-medium">Who</th>
              <th className="py-1 font-medium">Why</th>
            </tr>
          </thead>
          <tbody className="divide-y divide-slate-100">
            {rows.map((c) => {
              const info = statusInfo(c.status);
              return (
                <tr key={c.id} data-testid="cutover-row" className="align-top">
                  <td className="py-1.5">
                    <Time value={c.createdAt} compact />
                  </td>
                  <td className="py-1.5 font-mono">{c.tenantKey}</td>
                  <td className="py-1.5">
                    {c.fromName} → {c.toName}
                  </td>
                  <td className="py-1.5" title={info.meaning}>
                    <Badge tone={info.tone}>{info.label}</Badge>
                    {c.error ? (
                      <p className="mt-0.5 max-w-80 text-red-800" data-testid="cutover-error">
                        {c.error}
                      </p>
                    ) : null}
                  </td>
                  <td className="py-1.5 text-right tabular-nums">
                    {c.freezeMs === null ? "—" : durationText(c.freezeMs)}
                  </td>
                  <td className="py-1.5 pl-3">{c.requestedByEmail}</td>
                  <td className="py-1.5 text-slate-600">{c.reason}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      ) : null}
    </Card>
  );
}
