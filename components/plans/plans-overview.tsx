"use client";

import { useQuery } from "@tanstack/react-query";
import Link from "next/link";
import { useMemo, useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { useRoleBlock } from "@/components/providers/user";
import { Button } from "@/components/ui/button";
import { Card, PageTitle } from "@/components/ui/card";
import { TextInput } from "@/components/ui/field";
import { QueryState } from "@/components/ui/query-state";
import { Time } from "@/components/ui/time";
import { PhaseBadge } from "./phase";

export function PlansOverview() {
  const trpc = useTRPC();
  const [includeArchived, setIncludeArchived] = useState(false);
  const [filter, setFilter] = useState("");
  const plans = useQuery(trpc.plans.list.queryOptions({ includeArchived }));
  const blocked = useRoleBlock("operator");
  const rows = useMemo(
    () => (plans.data ?? []).filter((p) => p.name.toLowerCase().includes(filter.trim().toLowerCase())),
    [plans.data, filter],
  );

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
        title={`${rows.length} plan${rows.length === 1 ? "" : "s"}`}
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
        <QueryState isLoading={plans.isLoading} error={plans.error} what="plans" />
        {plans.data && rows.length === 0 ? (
          <p className="py-8 text-center text-sm text-slate-600">
            {plans.data.length === 0
              ? "No plans yet. Create one to start moving tenants from the legacy database to shards."
              : "No plan matches the filter."}
          </p>
        ) : null}
        {rows.length ? (
          <table className="w-full text-left text-sm">
            <thead className="text-xs text-slate-500">
              <tr>
                <th className="py-1.5 font-medium">Plan</th>
                <th className="py-1.5 font-medium">Phase</th>
                <th className="py-1.5 font-medium">Source → shards</th>
                <th className="py-1.5 font-medium">Shard key</th>
                <th className="py-1.5 font-medium">Updated</th>
              </tr>
            </thead>
            <tbody className="divide-y divide-slate-100">
              {rows.map((plan) => (
                <tr key={plan.id} className="hover:bg-slate-50">
                  <td className="py-2">
                    <Link href={`/plans/${plan.id}`} className="font-medium text-sky-800 hover:underline">
                      {plan.name}
                    </Link>
                  </td>
                  <td className="py-2">
                    <PhaseBadge phase={plan.phase} status={plan.status} />
                  </td>
                  <td className="py-2 text-slate-700">
                    {plan.source.name} → {plan.shards.length} shard{plan.shards.length === 1 ? "" : "s"}
                  </td>
                  <td className="py-2 font-mono text-xs">{plan.shardKeyColumn}</td>
                  <td className="py-2 text-xs text-slate-600">
                    <Time value={plan.updatedAt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
      </Card>
    </>
  );
}
