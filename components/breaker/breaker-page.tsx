"use client";

// The plan's breaker page (issue 13): the breaker's state with its controls, the automatic trip
// rules judged now (value against threshold, verdict, why, evidence: the cohort gates' shape and
// table), and the history of trips — who or which rule, why, when, how long from trip to legacy,
// tenants moved, outcome, and who re-armed it.
import { useQuery } from "@tanstack/react-query";
import { PlanHeader } from "@/components/plans/plan-header";
import { PlanQueryState } from "@/components/plans/plan-query-state";
import { usePlan } from "@/components/plans/use-plan";
import { useTRPC } from "@/components/providers/trpc";
import { Badge } from "@/components/ui/badge";
import { Card } from "@/components/ui/card";
import { type ColumnDef, DataTable } from "@/components/ui/data-table";
import { QueryState } from "@/components/ui/query-state";
import { Time } from "@/components/ui/time";
import { JudgementTable } from "../gates/judgement-table";
import { BreakerControls } from "./breaker-control";
import { BREAKER_STATE_WORDS, durationText, tripInFlight, tripOutcome } from "./breaker-words";

export function BreakerPage({ planId }: { planId: string }) {
  const plan = usePlan(planId);
  if (!plan.data) return <PlanQueryState planId={planId} isLoading={plan.isLoading} error={plan.error} />;
  return (
    <>
      <PlanHeader plan={plan.data} />
      <div className="space-y-4">
        <StateAndHistory plan={plan.data} />
        <TripRules planId={planId} />
      </div>
    </>
  );
}

function StateAndHistory({ plan }: { plan: { id: string; shards: { id: string; name: string }[] } }) {
  const trpc = useTRPC();
  const history = useQuery({
    ...trpc.breaker.history.queryOptions({ planId: plan.id, limit: 50 }),
    // Quick while a rollback runs (its steps take milliseconds), slow otherwise.
    refetchInterval: (query) => (query.state.data && tripInFlight(query.state.data.state) ? 1_000 : 5_000),
  });
  const data = history.data;
  type Trip = NonNullable<typeof data>["trips"][number];
  const newest = data?.trips[0];
  const columns: ColumnDef<Trip>[] = [
    {
      id: "when",
      header: "Tripped",
      accessorFn: (t) => new Date(t.createdAt).getTime(),
      cell: ({ row: { original: t } }) => <Time value={t.createdAt} compact />,
    },
    {
      id: "who",
      header: "By",
      accessorFn: (t) => (t.trigger === "manual" ? t.requestedByEmail : `rule ${t.trigger}`),
      cell: ({ row: { original: t } }) =>
        t.trigger === "manual" ? (
          t.requestedByEmail
        ) : (
          <span>
            rule <code className="font-mono text-xs">{t.trigger}</code>
          </span>
        ),
    },
    { id: "scope", header: "Scope", accessorFn: (t) => t.scopeLabel },
    {
      id: "reason",
      header: "Why",
      accessorFn: (t) => t.reason,
      cell: ({ getValue }) => <span className="text-xs text-slate-700">{getValue<string>()}</span>,
    },
    {
      id: "moved",
      header: "Tenants moved",
      accessorFn: (t) => t.tenantsMoved,
      cell: ({ row: { original: t } }) =>
        `${t.tenantsMoved} of ${t.tenants}${t.tenantsLeft > 0 ? ` (${t.tenantsLeft} left)` : ""}`,
      meta: { align: "right" },
    },
    {
      id: "duration",
      header: "Trip → legacy",
      accessorFn: (t) => t.tripToFlipMs ?? -1,
      cell: ({ row: { original: t } }) => (t.tripToFlipMs === null ? "—" : durationText(t.tripToFlipMs)),
      meta: { align: "right" },
    },
    {
      id: "freeze",
      header: "Writes paused",
      accessorFn: (t) => t.freezeMs ?? -1,
      cell: ({ row: { original: t } }) => (t.freezeMs === null ? "—" : durationText(t.freezeMs)),
      meta: { align: "right" },
    },
    {
      id: "outcome",
      header: "Outcome",
      accessorFn: (t) => t.status,
      cell: ({ row: { original: t } }) => {
        const words = tripOutcome(t);
        return (
          <div className="space-y-0.5">
            <Badge tone={BREAKER_STATE_WORDS[t.status].tone}>{BREAKER_STATE_WORDS[t.status].word}</Badge>
            {t.status !== "rolled_back" && words ? <p className="text-xs text-slate-600">{words}</p> : null}
            {t.rearmedByEmail ? (
              <p className="text-xs text-slate-500">
                Re-armed by {t.rearmedByEmail}
                {t.rearmedAt ? (
                  <>
                    {" "}
                    <Time value={t.rearmedAt} compact />
                  </>
                ) : null}
                {t.rearmReason ? `: ${t.rearmReason}` : ""}
              </p>
            ) : null}
          </div>
        );
      },
    },
  ];
  return (
    <>
      <Card
        title="Breaker"
        description="One trip moves a set of tenants — named ones, a shard's, a cohort's or every tenant on the shards — back to legacy in one step, with no acknowledged write lost and their writes paused for at most the plan's freeze budget."
        actions={<BreakerControls plan={plan} state={data ? data.state : null} />}
      >
        <QueryState isLoading={history.isLoading} error={history.error} what="the breaker" />
        {data ? (
          <div className="flex flex-wrap items-center gap-3 text-sm" data-testid="breaker-page-state">
            <Badge tone={BREAKER_STATE_WORDS[data.state].tone}>{BREAKER_STATE_WORDS[data.state].word}</Badge>
            <span className="text-slate-700">
              {data.state === "armed" || !newest
                ? newest
                  ? `Last trip re-armed by ${newest.rearmedByEmail ?? "an admin"}.`
                  : "Never tripped."
                : `Tripped ${newest.trigger === "manual" ? `by ${newest.requestedByEmail}` : `by rule ${newest.trigger}`} — ${newest.scopeLabel}: ${newest.reason}`}
            </span>
          </div>
        ) : null}
      </Card>
      <Card
        title="Trips and rollbacks"
        description="Newest first. Trip → legacy is from the click (or the rule) to the flip that gave every tenant back to legacy."
      >
        {data ? (
          <DataTable
            data={data.trips}
            columns={columns}
            label="Breaker trips"
            getRowId={(t) => t.id}
            rowTestId="breaker-trip-row"
            empty="The breaker has never tripped."
          />
        ) : null}
      </Card>
    </>
  );
}

function TripRules({ planId }: { planId: string }) {
  const trpc = useTRPC();
  const rules = useQuery({ ...trpc.cohorts.tripRules.queryOptions({ planId }), refetchInterval: 5_000 });
  const tripping = rules.data?.tripping.length ?? 0;
  return (
    <Card
      title="Automatic trip rules"
      description="What the breaker trips on by itself, each judged now from measured facts against the plan's settings. Inconclusive means the facts are missing or stale: a rule that cannot see does not trip, and says why."
      actions={
        rules.data ? (
          <Badge tone={tripping > 0 ? "danger" : "ok"}>
            {tripping > 0 ? `${tripping} would trip` : "none would trip"}
          </Badge>
        ) : null
      }
    >
      <QueryState isLoading={rules.isLoading} error={rules.error} what="the trip rules" />
      {rules.data ? (
        <JudgementTable
          rows={rules.data.rules}
          label="Trip rules"
          nameHeader="Rule"
          verdictWords={{ pass: "holds", fail: "would trip", inconclusive: "cannot see" }}
          rowTestId="trip-rule-row"
        />
      ) : null}
    </Card>
  );
}
