"use client";

import { useQuery } from "@tanstack/react-query";
import { useTRPC } from "@/components/providers/trpc";
import { Badge } from "@/components/ui/badge";
import { Card } from "@/components/ui/card";
import { Progress } from "@/components/ui/progress";
import { QueryState } from "@/components/ui/query-state";
import { Time } from "@/components/ui/time";

const nf = new Intl.NumberFormat();

/** Backfill progress per tenant cohort (the plan's promotion ladder), from the tenant census. */
export function CohortProgress({ planId }: { planId: string }) {
  const trpc = useTRPC();
  const view = useQuery({ ...trpc.movement.cohorts.queryOptions({ planId }), refetchInterval: 2_000 });
  const v = view.data;
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
          <table className="w-full text-left text-xs">
            <thead className="text-slate-500">
              <tr>
                <th className="py-1 font-medium">Cohort</th>
                <th className="py-1 font-medium">Tenants copied</th>
                <th className="w-1/3 py-1 font-medium">Rows copied</th>
                <th className="py-1 text-right font-medium">Rows</th>
                <th className="py-1 text-right font-medium">Largest tenant</th>
              </tr>
            </thead>
            <tbody className="divide-y divide-slate-100">
              {v.cohorts.map((c, i) => {
                const from = i === 0 ? 0 : (v.cohorts[i - 1]?.percent ?? 0);
                const done = c.tenantsCopied === c.tenants;
                return (
                  <tr key={c.cohort} data-testid="cohort-row">
                    <td className="py-1.5">
                      <span className="font-medium">Cohort {c.cohort}</span>{" "}
                      <span className="text-slate-500">
                        (tenants {from}–{c.percent}%)
                      </span>
                    </td>
                    <td className="py-1.5 tabular-nums">
                      {done ? <Badge tone="ok">all copied</Badge> : null} {nf.format(c.tenantsCopied)} of{" "}
                      {nf.format(c.tenants)}
                    </td>
                    <td className="py-1.5 pr-4">
                      <Progress
                        value={c.rowsCopied}
                        total={c.rowsTotal}
                        label={`Cohort ${c.cohort} progress`}
                      />
                    </td>
                    <td className="py-1.5 text-right tabular-nums">
                      {nf.format(c.rowsCopied)} / {nf.format(c.rowsTotal)}
                    </td>
                    <td className="py-1.5 text-right tabular-nums">{nf.format(c.largestTenantRows)} rows</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          <p className="mt-2 text-xs text-slate-500">
            Rows per tenant counted <Time value={v.countedAt} />; rows written since are copied but not
            counted here.
          </p>
        </>
      ) : null}
    </Card>
  );
}
