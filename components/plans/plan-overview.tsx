"use client";

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { AuditTable } from "@/components/audit/audit-table";
import { fitWindow } from "@/components/charts/chart-window";
import { LagChart } from "@/components/charts/lag-chart";
import { WindowSelect } from "@/components/charts/window-select";
import { TenantPlacementCard } from "@/components/cohorts/tenant-placement";
import { useTRPC } from "@/components/providers/trpc";
import { useRoleBlock } from "@/components/providers/user";
import { Button } from "@/components/ui/button";
import { Card } from "@/components/ui/card";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { messageOf } from "@/components/ui/field-errors";
import { QueryState } from "@/components/ui/query-state";
import { useNow } from "@/components/ui/time";
import { PHASE_INFO, PLAN_PHASES, type PlanPhase } from "@/server/schemas/plan";
import { lagText, StrayWritesLink } from "./figure-badges";
import { PhaseTimeline } from "./phase-timeline";
import { PlanHeader } from "./plan-header";
import { PlanQueryState } from "./plan-query-state";
import { usePlan } from "./use-plan";
import { useChartMarkers, usePlanFigures } from "./use-plan-figures";

const nf = new Intl.NumberFormat();

export function PlanOverview({ planId }: { planId: string }) {
  const plan = usePlan(planId);
  if (!plan.data) return <PlanQueryState planId={planId} isLoading={plan.isLoading} error={plan.error} />;
  const p = plan.data;
  return (
    <>
      <PlanHeader plan={p} />
      <div className="space-y-4">
        <Card
          title="DATA-BALANCE timeline"
          description="Each step's state from the engine's own facts (steps overlap: CDC and the backfill run together, parity stays on), and where the plan is."
        >
          <PhaseTimeline phase={p.phase} transitions={p.transitions} steps={p.steps} />
        </Card>
        <div className="grid grid-cols-3 gap-4">
          <PhaseActions plan={p} />
          <Card title="Settings" className="col-span-1">
            <dl className="grid grid-cols-2 gap-x-3 gap-y-1.5 text-xs">
              <dt className="text-slate-500">Backfill limit</dt>
              <dd>{nf.format(p.settings.backfillRowsPerSecond)} rows/s</dd>
              <dt className="text-slate-500">Parity check limit</dt>
              <dd>{nf.format(p.settings.parityRowsPerSecond)} rows/s</dd>
              <dt className="text-slate-500">CDC lag threshold</dt>
              <dd>{nf.format(p.settings.cdcLagThresholdMs)} ms</dd>
              <dt className="text-slate-500">Freeze budget</dt>
              <dd>{nf.format(p.settings.freezeBudgetMs)} ms</dd>
              <dt className="text-slate-500">Cohort steps</dt>
              <dd>{p.settings.cohortPercents.map((c) => `${c}%`).join(" → ")}</dd>
              <dt className="text-slate-500">Cohort soak</dt>
              <dd>{p.settings.gateSoakMinutes} min</dd>
              <dt className="text-slate-500">Parity gate</dt>
              <dd>{p.settings.requireCleanParity ? "Clean parity required" : "Not required"}</dd>
              <dt className="text-slate-500">Soak before clean-up</dt>
              <dd>{p.settings.soakDays} days</dd>
            </dl>
          </Card>
          <Card title="Topology">
            <ul className="space-y-1 text-xs">
              <li>
                <span className="text-slate-500">Source:</span> {p.source.name}
              </li>
              {p.shards.map((s) => (
                <li key={s.id}>
                  <span className="text-slate-500">Shard {s.ordinal}:</span> {s.name}
                </li>
              ))}
            </ul>
          </Card>
        </div>
        <TenantPlacementCard planId={planId} />
        <ReplicationLag planId={planId} />
        <RecentPlanAudit planId={planId} />
      </div>
    </>
  );
}

type Plan = NonNullable<ReturnType<typeof usePlan>["data"]>;

function PhaseActions({ plan }: { plan: Plan }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const roleBlock = useRoleBlock("operator");
  const transition = useMutation(
    trpc.plans.transition.mutationOptions({
      onSuccess: () => queryClient.invalidateQueries(),
    }),
  );
  const index = PLAN_PHASES.indexOf(plan.phase);
  const next = PLAN_PHASES[index + 1] as PlanPhase | undefined;
  const previous = PLAN_PHASES[index - 1] as PlanPhase | undefined;
  const reasonFor = (event: "advance" | "revert" | "archive") => {
    const outcome = plan.available[event];
    return roleBlock ?? (outcome.allowed ? null : outcome.reason);
  };
  const run = (event: "advance" | "revert" | "archive") => (reason: string) =>
    transition.mutateAsync({ planId: plan.id, expectedVersion: plan.version, event, reason });
  const error = transition.error ? messageOf(transition.error) : null;

  const actions: {
    event: "advance" | "revert" | "archive";
    label: string;
    title: string;
    scope: string;
    dismiss: string;
    tone: "primary" | "danger";
  }[] = [
    {
      event: "advance",
      label: next ? `Advance to “${PHASE_INFO[next].title}”` : "Advance",
      title: "Advance the plan",
      scope: next
        ? `Move plan “${plan.name}” from “${PHASE_INFO[plan.phase].title}” to “${PHASE_INFO[next].title}”.`
        : "",
      dismiss: "Stay in this phase",
      tone: "primary",
    },
    {
      event: "revert",
      label: previous ? `Revert to “${PHASE_INFO[previous].title}”` : "Revert",
      title: "Revert the plan",
      scope: previous
        ? `Move plan “${plan.name}” back from “${PHASE_INFO[plan.phase].title}” to “${PHASE_INFO[previous].title}”.`
        : "",
      dismiss: "Stay in this phase",
      tone: "danger",
    },
    {
      event: "archive",
      label: "Archive plan",
      title: "Archive the plan",
      scope: `Archive “${plan.name}”: it becomes read-only, its history is kept.`,
      dismiss: "Keep the plan active",
      tone: "danger",
    },
  ];

  return (
    <Card
      title="Phase"
      description={
        plan.status === "archived"
          ? "Archived plans are read-only."
          : "Every move is checked by the plan's state machine and audited."
      }
    >
      <div className="flex flex-col items-start gap-3">
        {actions.map((action) => {
          const blocked = reasonFor(action.event);
          if (blocked) {
            return (
              <Button
                key={action.event}
                variant={action.tone === "danger" ? "secondary" : "primary"}
                disabledReason={blocked}
              >
                {action.label}
              </Button>
            );
          }
          return (
            <ConfirmDialog
              key={action.event}
              trigger={
                <Button variant={action.tone === "danger" ? "secondary" : "primary"}>{action.label}</Button>
              }
              title={action.title}
              scope={action.scope}
              confirmLabel={action.label}
              dismissLabel={action.dismiss}
              tone={action.tone}
              busy={transition.isPending}
              error={error}
              onConfirm={run(action.event)}
            />
          );
        })}
      </div>
    </Card>
  );
}

/** Forward and reverse lag over a window, with the figures the header shows and the stray writes. */
function ReplicationLag({ planId }: { planId: string }) {
  const trpc = useTRPC();
  const [minutes, setMinutes] = useState(15);
  const series = useQuery({
    ...trpc.figures.lagSeries.queryOptions({ planId, minutes }),
    refetchInterval: 2_000,
  });
  const markers = useChartMarkers(planId, minutes).data;
  const figures = usePlanFigures(planId).data;
  const now = useNow();
  const forward = series.data?.forward ?? [];
  const reverse = series.data?.reverse ?? [];
  const domain = fitWindow(
    [...forward, ...reverse].map((p) => p.t),
    minutes,
    Math.max(Date.now(), forward.at(-1)?.t ?? 0, reverse.at(-1)?.t ?? 0),
  );
  const reverseText =
    !figures || figures.reverseLag.state === "none_on_shards"
      ? "— (no tenant on a shard)"
      : figures.reverseLag.state === "waiting"
        ? "Not measured yet"
        : lagText({ ...figures.reverseLag }, now);
  return (
    <Card
      title="Replication lag"
      description="Forward: a write committed on legacy → applied on the shards. Reverse: a write on a shard → applied on legacy, which keeps legacy ready to take a tenant back. Reverse exists once a tenant is cut over."
      actions={<WindowSelect id="lag-window" minutes={minutes} onChange={setMinutes} />}
    >
      <QueryState isLoading={series.isLoading} error={series.error} what="the lag" />
      {figures ? (
        <dl className="mb-2 flex flex-wrap gap-x-6 gap-y-1 text-xs" data-testid="overview-lag">
          <div className="flex gap-1.5">
            <dt className="text-slate-500">Forward now</dt>
            <dd className="tabular-nums">{lagText(figures.lag, now)}</dd>
          </div>
          <div className="flex gap-1.5">
            <dt className="text-slate-500">Reverse now</dt>
            <dd className="tabular-nums" data-testid="overview-reverse-lag">
              {reverseText}
            </dd>
          </div>
          <div className="flex gap-1.5">
            <dt className="text-slate-500">Tenants on shards</dt>
            <dd className="tabular-nums">{nf.format(figures.tenants.onShards)}</dd>
          </div>
          <div className="flex gap-1.5">
            <dt className="text-slate-500">Stray writes</dt>
            <dd>
              {figures.strayWrites.total > 0 ? (
                <StrayWritesLink planId={planId} stray={figures.strayWrites} />
              ) : (
                "none refused"
              )}
            </dd>
          </div>
        </dl>
      ) : null}
      {series.data ? (
        <LagChart forward={forward} reverse={reverse} domain={domain} markers={markers} />
      ) : null}
    </Card>
  );
}

function RecentPlanAudit({ planId }: { planId: string }) {
  const trpc = useTRPC();
  const events = useQuery(trpc.audit.list.queryOptions({ filter: { planId }, limit: 10 }));
  return (
    <Card title="Recent changes" description="The latest audit events for this plan.">
      <QueryState isLoading={events.isLoading} error={events.error} what="audit events" />
      {events.data ? <AuditTable events={events.data.events} compact /> : null}
    </Card>
  );
}
