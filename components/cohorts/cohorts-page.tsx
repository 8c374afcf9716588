"use client";

// The plan's cohorts page (issue 14): the ladder as drawn (each cohort's tenants, rows and states),
// the selected cohort's gates (value, threshold, verdict, reason and a link to the evidence), the
// dry run of promoting it, the promote action with a reason (an admin may override a gate with a
// reason), and the promotions with each tenant's live state, failures and a retry per tenant.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { PlanHeader } from "@/components/plans/plan-header";
import { PlanQueryState } from "@/components/plans/plan-query-state";
import { usePlan } from "@/components/plans/use-plan";
import { useTRPC } from "@/components/providers/trpc";
import { useRoleBlock } from "@/components/providers/user";
import { Alert } from "@/components/ui/alert";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card } from "@/components/ui/card";
import { type ColumnDef, DataTable } from "@/components/ui/data-table";
import { Field, TextInput } from "@/components/ui/field";
import { messageOf } from "@/components/ui/field-errors";
import { QueryState } from "@/components/ui/query-state";
import { Time } from "@/components/ui/time";
import { type BreakerPlan, TripBreakerDialog } from "../breaker/breaker-control";
import { JudgementTable } from "../gates/judgement-table";
import { PromotionsCard } from "./promotions-card";
import { TenantPlacementCard } from "./tenant-placement";

const nf = new Intl.NumberFormat();

export function CohortsPage({ planId }: { planId: string }) {
  const plan = usePlan(planId);
  const [selected, setSelected] = useState(1);
  if (!plan.data) return <PlanQueryState planId={planId} isLoading={plan.isLoading} error={plan.error} />;
  return (
    <>
      <PlanHeader plan={plan.data} />
      <div className="space-y-4">
        <TenantPlacementCard planId={planId} compact />
        <Ladder plan={plan.data} selected={selected} onSelect={setSelected} />
        <Gates planId={planId} ordinal={selected} />
        <DryRunAndPromote planId={planId} ordinal={selected} />
        <PromotionsCard planId={planId} />
      </div>
    </>
  );
}

interface LadderRow {
  ordinal: number;
  label: string;
  tenants: number;
  cumulativeTenants: number;
  rows: number;
  states: Record<string, number>;
}

function Ladder({
  plan,
  selected,
  onSelect,
}: {
  plan: BreakerPlan;
  selected: number;
  onSelect: (ordinal: number) => void;
}) {
  const planId = plan.id;
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const roleBlock = useRoleBlock("operator");
  const operatorBlock = roleBlock;
  const ladder = useQuery({
    ...trpc.cohorts.list.queryOptions({ planId, limit: 0 }),
    refetchInterval: 3_000,
  });
  const draw = useMutation(
    trpc.cohorts.draw.mutationOptions({
      onSuccess: () => queryClient.invalidateQueries({ queryKey: trpc.cohorts.list.queryKey() }),
    }),
  );
  const columns: ColumnDef<LadderRow>[] = [
    {
      id: "cohort",
      header: "Cohort",
      accessorFn: (r) => r.ordinal,
      cell: ({ row: { original: r } }) => (
        <button
          type="button"
          onClick={() => onSelect(r.ordinal)}
          aria-pressed={r.ordinal === selected}
          className={`font-medium hover:underline ${r.ordinal === selected ? "text-sky-900 underline" : "text-sky-700"}`}
        >
          {r.ordinal}. {r.label}
        </button>
      ),
    },
    { id: "tenants", header: "Its tenants", accessorFn: (r) => r.tenants, meta: { align: "right" } },
    {
      id: "cumulative",
      header: "With earlier",
      accessorFn: (r) => r.cumulativeTenants,
      meta: { align: "right" },
    },
    {
      id: "rows",
      header: "Rows",
      accessorFn: (r) => r.rows,
      cell: ({ getValue }) => nf.format(getValue<number>()),
      meta: { align: "right" },
    },
    {
      id: "onShard",
      header: "On shards",
      accessorFn: (r) => r.states.on_shard ?? 0,
      meta: { align: "right" },
    },
    {
      id: "moving",
      header: "Cutting over",
      accessorFn: (r) => (r.states.cutting_over ?? 0) + (r.states.rolling_back ?? 0),
      meta: { align: "right" },
    },
    {
      id: "failed",
      header: "Failed",
      accessorFn: (r) => r.states.failed ?? 0,
      meta: { align: "right" },
    },
    {
      id: "breaker",
      header: "Breaker",
      enableSorting: false,
      cell: ({ row: { original: r } }) =>
        operatorBlock ? (
          <Button variant="secondary" disabled title={operatorBlock}>
            Roll back…
          </Button>
        ) : (
          <TripBreakerDialog
            plan={plan}
            initial={{ kind: "cohort", ordinal: r.ordinal, andLater: false }}
            trigger={
              <Button variant="secondary" data-testid={`cohort-rollback-${r.ordinal}`}>
                Roll back…
              </Button>
            }
          />
        ),
    },
  ];
  const data = ladder.data;
  return (
    <Card
      title="Ladder"
      description={
        data?.drawn
          ? "Drawn once and stored: a tenant changes cohort only by an audited move or redraw. Each cohort includes the ones before it. Select a cohort to see its gates and promote it."
          : "Tenants move in cohorts (1% → 5% → 25% → 100% by default), smallest first. Draw the ladder once from the tenant census."
      }
    >
      <QueryState isLoading={ladder.isLoading} error={ladder.error} what="the ladder" />
      {data && !data.drawn ? (
        <div className="space-y-2">
          <Button
            variant="primary"
            disabledReason={roleBlock}
            busy={draw.isPending}
            onClick={() => draw.mutate({ planId, redraw: false })}
          >
            Draw the ladder
          </Button>
          {draw.error ? <Alert tone="error">{messageOf(draw.error)}</Alert> : null}
        </div>
      ) : null}
      {data?.drawn ? (
        <>
          <DataTable
            data={data.cohorts as LadderRow[]}
            columns={columns}
            label="Cohort ladder"
            getRowId={(r) => String(r.ordinal)}
            rowTestId="cohort-row"
            empty="No cohort."
          />
          <p className="mt-2 text-xs text-slate-500">
            Drawn by {data.drawnBy} {data.drawnAt ? <Time value={data.drawnAt} /> : null}
            {data.held && data.held.tenants > 0
              ? ` · ${data.held.tenants} tenants held on legacy by their tags`
              : ""}
          </p>
        </>
      ) : null}
    </Card>
  );
}

function Gates({ planId, ordinal }: { planId: string; ordinal: number }) {
  const trpc = useTRPC();
  const gates = useQuery({ ...trpc.cohorts.gates.queryOptions({ planId, ordinal }), refetchInterval: 5_000 });
  return (
    <Card
      title={`Gates of cohort ${ordinal}`}
      description="Each judged now from measured facts. Inconclusive means the facts are missing or stale: it blocks like a failure and says why."
      actions={
        gates.data ? (
          <Badge tone={gates.data.open ? "ok" : "warn"}>{gates.data.open ? "open" : "blocked"}</Badge>
        ) : null
      }
    >
      <QueryState isLoading={gates.isLoading} error={gates.error} what="the gates" />
      {gates.data ? (
        <JudgementTable
          rows={gates.data.gates}
          label={`Gates of cohort ${ordinal}`}
          nameHeader="Gate"
          rowTestId="gate-row"
        />
      ) : null}
    </Card>
  );
}

function DryRunAndPromote({ planId, ordinal }: { planId: string; ordinal: number }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const roleBlock = useRoleBlock("operator");
  const adminBlock = useRoleBlock("admin");
  const [reason, setReason] = useState("");
  const [override, setOverride] = useState("");
  const [asked, setAsked] = useState(false);
  const preview = useQuery({
    ...trpc.cohorts.promotePreview.queryOptions({ planId, ordinal }),
    enabled: asked,
  });
  const promote = useMutation(
    trpc.cohorts.promote.mutationOptions({
      onSuccess: () => {
        setReason("");
        setOverride("");
        return queryClient.invalidateQueries({ queryKey: trpc.cohorts.promotions.queryKey() });
      },
    }),
  );
  const p = preview.data;
  type Tenant = NonNullable<typeof p>["tenants"][number];
  const columns: ColumnDef<Tenant>[] = [
    { id: "position", header: "#", accessorFn: (t) => t.position, meta: { align: "right" } },
    { id: "tenant", header: "Tenant", accessorFn: (t) => t.tenant, meta: { className: "font-mono" } },
    {
      id: "rows",
      header: "Rows",
      accessorFn: (t) => t.rows,
      cell: ({ getValue }) => nf.format(getValue<number>()),
      meta: { align: "right" },
    },
    { id: "to", header: "To", accessorFn: (t) => t.to ?? "—" },
    {
      id: "freeze",
      header: "Expected freeze",
      accessorFn: (t) => t.expectedFreezeMs ?? -1,
      cell: ({ row: { original: t } }) =>
        t.expectedFreezeMs === null
          ? "unknown"
          : `≈ ${nf.format(t.expectedFreezeMs)} ms of ${nf.format(t.budgetMs)}`,
      meta: { align: "right" },
    },
    {
      id: "blockers",
      header: "Would stop it",
      accessorFn: (t) => t.blockers.join(" "),
      cell: ({ row: { original: t } }) => (
        <span className="text-xs text-red-800">{t.blockers.join(" ") || "—"}</span>
      ),
    },
  ];
  const gatesBlocked = p ? !p.gatesOpen : false;
  return (
    <Card
      title={`Promote cohort ${ordinal}`}
      description="The dry run lists which tenants would be cut over, in what order, the expected freeze of each, and anything that would stop it. Nothing changes until you promote."
      actions={
        <Button onClick={() => (asked ? preview.refetch() : setAsked(true))} busy={preview.isFetching}>
          Dry run
        </Button>
      }
    >
      <div className="space-y-3">
        <QueryState isLoading={preview.isLoading && asked} error={preview.error} what="the dry run" />
        {p ? (
          <div className="space-y-2" data-testid="promote-dry-run">
            <p className="text-sm">
              {p.tenants.length} tenant{p.tenants.length === 1 ? "" : "s"} ({nf.format(p.rows)} rows),{" "}
              {p.concurrency} at a time
              {p.estimatedSeconds !== null ? `, about ${nf.format(p.estimatedSeconds)} s` : ""}
              {p.expectedFreezeMsMax !== null
                ? `; longest expected freeze ≈ ${nf.format(p.expectedFreezeMsMax)} ms`
                : ""}
              .
            </p>
            {p.blockers.length > 0 ? (
              <Alert tone="warn" title="Promoting now would be refused">
                <ul className="list-disc pl-4" data-testid="promote-blockers">
                  {p.blockers.map((b) => (
                    <li key={b}>{b}</li>
                  ))}
                </ul>
              </Alert>
            ) : (
              <Alert tone="ok" title="Nothing stands in the way" />
            )}
            <DataTable
              data={p.tenants}
              columns={columns}
              label="Tenants the promotion would cut over"
              getRowId={(t) => t.tenant}
              rowTestId="dry-run-row"
              empty="No tenant of this cohort is left on legacy."
            />
          </div>
        ) : null}
        <form
          className="grid gap-2 sm:grid-cols-2"
          onSubmit={(e) => {
            e.preventDefault();
            promote.mutate({
              planId,
              ordinal,
              reason,
              ...(override.trim() ? { overrideReason: override } : {}),
            });
          }}
        >
          <Field id="promote-reason" label="Why promote now" hint="Goes into the audit log.">
            <TextInput id="promote-reason" value={reason} onChange={(e) => setReason(e.target.value)} />
          </Field>
          {gatesBlocked && !adminBlock ? (
            <Field
              id="promote-override"
              label="Override the gates (admin)"
              hint="Promote although a gate does not pass: say why. Audited with every gate's judgement."
            >
              <TextInput
                id="promote-override"
                value={override}
                onChange={(e) => setOverride(e.target.value)}
              />
            </Field>
          ) : null}
          <div className="sm:col-span-2">
            <Button
              type="submit"
              variant="primary"
              disabledReason={
                roleBlock ?? (reason.trim().length < 3 ? "Say why (at least 3 characters)." : null)
              }
              busy={promote.isPending}
            >
              Promote cohort {ordinal}
            </Button>
          </div>
        </form>
        {promote.error ? (
          <div data-testid="promote-error">
            <Alert tone="error">{messageOf(promote.error)}</Alert>
          </div>
        ) : null}
        {promote.data ? (
          <Alert tone="ok" title={`Promotion started: ${promote.data.tenants} tenants`}>
            Follow it below.
          </Alert>
        ) : null}
      </div>
    </Card>
  );
}
