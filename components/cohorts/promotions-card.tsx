"use client";

// A plan's promotions, newest first: status and counts, the controls (pause, resume, stop — each
// with a reason, audited), the gate judgement that stopped one, and each tenant's live state in
// order, an aborted one with its reason and a retry.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { useRoleBlock } from "@/components/providers/user";
import { Alert } from "@/components/ui/alert";
import { Badge, type Tone } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card } from "@/components/ui/card";
import { type ColumnDef, DataTable } from "@/components/ui/data-table";
import { Field, TextInput } from "@/components/ui/field";
import { messageOf } from "@/components/ui/field-errors";
import { QueryState } from "@/components/ui/query-state";
import { Time } from "@/components/ui/time";

const nf = new Intl.NumberFormat();
const STATUS_TONE: Record<string, Tone> = {
  requested: "neutral",
  running: "info",
  paused: "warn",
  stopping: "warn",
  done: "ok",
  stopped: "neutral",
  failed: "danger",
};
const TENANT_TONE: Record<string, Tone> = {
  pending: "neutral",
  requested: "info",
  done: "ok",
  aborted: "danger",
  rolled_back: "warn",
};
const TENANT_LABEL: Record<string, string> = {
  pending: "waiting",
  requested: "cutting over",
  done: "on shard",
  aborted: "aborted (on legacy)",
  rolled_back: "back on legacy",
};

export function PromotionsCard({ planId }: { planId: string }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const roleBlock = useRoleBlock("operator");
  const [reason, setReason] = useState("");
  const promotions = useQuery({
    ...trpc.cohorts.promotions.queryOptions({ planId, limit: 5 }),
    refetchInterval: (q) =>
      q.state.data?.some((p) => !["done", "stopped", "failed"].includes(p.status)) ? 1_000 : 5_000,
  });
  const onSuccess = () => queryClient.invalidateQueries({ queryKey: trpc.cohorts.promotions.queryKey() });
  const pause = useMutation(trpc.cohorts.pausePromotion.mutationOptions({ onSuccess }));
  const resume = useMutation(trpc.cohorts.resumePromotion.mutationOptions({ onSuccess }));
  const stop = useMutation(trpc.cohorts.stopPromotion.mutationOptions({ onSuccess }));
  const retry = useMutation(trpc.cohorts.retryTenant.mutationOptions({ onSuccess }));
  const error = pause.error ?? resume.error ?? stop.error ?? retry.error;
  const needReason = roleBlock ?? (reason.trim().length < 3 ? "Give a reason above first." : null);

  type Promotion = NonNullable<typeof promotions.data>[number];
  type Tenant = Promotion["tenants"][number];
  const columns = (p: Promotion): ColumnDef<Tenant>[] => [
    { id: "position", header: "#", accessorFn: (t) => t.position, meta: { align: "right" } },
    { id: "tenant", header: "Tenant", accessorFn: (t) => t.tenant, meta: { className: "font-mono" } },
    {
      id: "rows",
      header: "Rows",
      accessorFn: (t) => t.rows,
      cell: ({ getValue }) => nf.format(getValue<number>()),
      meta: { align: "right" },
    },
    {
      id: "status",
      header: "State",
      accessorFn: (t) => t.status,
      cell: ({ row: { original: t } }) => (
        <span data-testid="promotion-tenant-state">
          <Badge tone={TENANT_TONE[t.status]}>
            {TENANT_LABEL[t.status] ?? t.status}
            {t.status === "requested" && t.cutoverStatus ? ` · ${t.cutoverStatus}` : ""}
          </Badge>
        </span>
      ),
    },
    {
      id: "freeze",
      header: "Writes paused",
      accessorFn: (t) => t.freezeMs ?? -1,
      cell: ({ row: { original: t } }) => (t.freezeMs === null ? "—" : `${nf.format(t.freezeMs)} ms`),
      meta: { align: "right" },
    },
    {
      id: "error",
      header: "Why it is on legacy",
      accessorFn: (t) => t.error ?? "",
      cell: ({ row: { original: t } }) =>
        t.status === "aborted" || t.status === "rolled_back" ? (
          <div className="space-y-1">
            <p className={`max-w-96 text-xs ${t.status === "aborted" ? "text-red-800" : "text-amber-800"}`}>
              {t.error}
            </p>
            <Button
              disabledReason={needReason}
              busy={retry.isPending}
              onClick={() => retry.mutate({ promotionId: p.id, tenantKey: t.tenant, reason })}
            >
              Retry
            </Button>
          </div>
        ) : null,
    },
  ];

  return (
    <Card
      title="Promotions"
      description="Each promotion cuts its cohort's tenants over a few at a time, judging the gates between waves: it stops by itself when one fails. An aborted tenant stays on legacy until retried; one the breaker rolled back is shown back on legacy, and may be retried once the breaker is re-armed."
    >
      <div className="space-y-3">
        <Field id="promotion-control-reason" label="Reason for pause, resume, stop or retry" hint="Audited.">
          <TextInput
            id="promotion-control-reason"
            value={reason}
            onChange={(e) => setReason(e.target.value)}
          />
        </Field>
        {error ? <Alert tone="error">{messageOf(error)}</Alert> : null}
        <QueryState isLoading={promotions.isLoading} error={promotions.error} what="the promotions" />
        {promotions.data && promotions.data.length === 0 ? (
          <p className="text-xs text-slate-600">No cohort has been promoted yet.</p>
        ) : null}
        {promotions.data?.map((p) => (
          <section
            key={p.id}
            className="space-y-2 rounded-md border border-slate-200 p-3"
            data-testid="promotion"
          >
            <div className="flex flex-wrap items-center justify-between gap-2">
              <div className="text-sm">
                <span className="font-medium">Cohort {p.ordinal}</span>{" "}
                <span data-testid="promotion-status">
                  <Badge tone={STATUS_TONE[p.status]}>{p.status}</Badge>
                </span>{" "}
                <span className="text-slate-600">
                  {p.counts.done} of {p.counts.total} on shards · {p.counts.inFlight} cutting over ·{" "}
                  {p.counts.aborted} aborted ·{" "}
                  {p.counts.rolledBack ? `${p.counts.rolledBack} rolled back to legacy · ` : ""}by{" "}
                  {p.requestedByEmail} <Time value={p.createdAt} /> — {p.reason}
                </span>
                {p.overrideReason ? (
                  <p className="text-xs text-amber-800">Gates overridden by an admin: {p.overrideReason}</p>
                ) : null}
              </div>
              <div className="flex gap-2">
                {p.status === "running" ? (
                  <Button
                    disabledReason={needReason}
                    onClick={() => pause.mutate({ promotionId: p.id, reason })}
                  >
                    Pause
                  </Button>
                ) : null}
                {p.status === "paused" ? (
                  <Button
                    disabledReason={needReason}
                    onClick={() => resume.mutate({ promotionId: p.id, reason })}
                  >
                    Resume
                  </Button>
                ) : null}
                {["requested", "running", "paused"].includes(p.status) ? (
                  <Button
                    disabledReason={needReason}
                    onClick={() => stop.mutate({ promotionId: p.id, reason })}
                  >
                    Stop
                  </Button>
                ) : null}
              </div>
            </div>
            {p.stopJudgement ? (
              <Alert tone="warn" title={`Stopped by a gate: ${p.stopJudgement.title}`}>
                {p.stopJudgement.reason}
              </Alert>
            ) : null}
            <DataTable
              data={p.tenants}
              columns={columns(p)}
              label={`Tenants of cohort ${p.ordinal}'s promotion`}
              getRowId={(t) => t.tenant}
              rowTestId="promotion-tenant"
              empty="No tenant."
            />
          </section>
        ))}
      </div>
    </Card>
  );
}
