"use client";

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import type { inferRouterOutputs } from "@trpc/server";
import { useState } from "react";
import { TimeSeriesChart } from "@/components/charts/time-series-chart";
import { WindowSelect } from "@/components/charts/window-select";
import { PlanHeader } from "@/components/plans/plan-header";
import { usePlan } from "@/components/plans/use-plan";
import { useTRPC } from "@/components/providers/trpc";
import { useRoleBlock } from "@/components/providers/user";
import { Alert } from "@/components/ui/alert";
import { Badge, type Tone } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card } from "@/components/ui/card";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { Field, TextInput } from "@/components/ui/field";
import { messageOf } from "@/components/ui/field-errors";
import { Progress } from "@/components/ui/progress";
import { QueryState } from "@/components/ui/query-state";
import { Time } from "@/components/ui/time";
import { ZSetRateInput } from "@/server/schemas/movement";
import type { AppRouter } from "@/server/trpc/root";
import { CohortProgress } from "./cohort-progress";
import { backfillRateSeries, etaRange, formatEta, namedSeries, type Sample } from "./series";

const nf = new Intl.NumberFormat();

const STATUS_TONE: Record<string, Tone> = {
  running: "info",
  paused: "warn",
  preparing: "info",
  cancelling: "warn",
  cancelled: "neutral",
  failed: "danger",
  done: "ok",
  pending: "neutral",
};

export function BackfillPage({ planId }: { planId: string }) {
  const trpc = useTRPC();
  const plan = usePlan(planId);
  const [minutes, setMinutes] = useState(15);
  const status = useQuery({
    ...trpc.movement.status.queryOptions({ planId, minutes }),
    refetchInterval: 2_000,
  });
  if (!plan.data) return <QueryState isLoading={plan.isLoading} error={plan.error} what="the plan" />;
  const s = status.data;
  const rates = s ? backfillRateSeries(s.samples) : [];
  const lag = s ? namedSeries(s.samples, "cdc.lag_ms") : [];
  const remaining = s ? s.totals.rowsTotal - s.totals.rowsCopied : 0;
  const eta = s ? etaRange(remaining, rates) : null;
  const currentRate = rates.at(-1)?.value ?? 0;

  return (
    <>
      <PlanHeader plan={plan.data} />
      <div className="space-y-4">
        <QueryState isLoading={status.isLoading} error={status.error} what="the data movement" />
        {s ? (
          <Controls
            planId={planId}
            status={s}
            phase={plan.data.phase}
            rate={plan.data.settings.backfillRowsPerSecond}
          />
        ) : null}
        {s?.movement ? (
          <>
            <Card
              title="Backfill progress"
              description={`${s.totals.tablesDone} of ${s.totals.tables} tables done. Rows copied are counted as chunks commit on the shards.`}
            >
              <div className="mb-3 grid grid-cols-4 gap-3 text-sm">
                <Stat
                  label="Rows copied"
                  value={`${nf.format(s.totals.rowsCopied)} of ~${nf.format(s.totals.rowsTotal)}`}
                />
                <Stat label="Copy rate" value={`${nf.format(Math.round(currentRate))} rows/s`} />
                <Stat
                  label="ETA"
                  value={
                    remaining <= 0 || s.totals.tablesDone === s.totals.tables
                      ? "Done"
                      : eta
                        ? formatEta(eta)
                        : s.movement.status === "paused"
                          ? "Paused"
                          : "Estimating…"
                  }
                />
                <Stat
                  label="CDC lag"
                  value={lag.length ? `${nf.format(Math.round(lag.at(-1)?.value ?? 0))} ms` : "—"}
                />
              </div>
              <Progress
                value={s.totals.rowsCopied}
                total={s.totals.rowsTotal}
                label="Overall backfill progress"
              />
              <table className="mt-4 w-full text-left text-xs">
                <thead className="text-slate-500">
                  <tr>
                    <th className="py-1 font-medium">Table</th>
                    <th className="py-1 font-medium">Kind</th>
                    <th className="py-1 font-medium">Status</th>
                    <th className="w-1/4 py-1 font-medium">Progress</th>
                    <th className="py-1 text-right font-medium">Rows</th>
                    <th className="py-1 text-right font-medium">Rate</th>
                    <th className="py-1 text-right font-medium">ETA</th>
                  </tr>
                </thead>
                <tbody className="divide-y divide-slate-100">
                  {s.tasks.map((t) => (
                    <tr key={t.id} data-testid="backfill-task">
                      <td className="py-1.5 font-mono">{t.table.replaceAll('"', "")}</td>
                      <td className="py-1.5">
                        {t.kind === "reference" ? "reference (every shard)" : "sharded"}
                      </td>
                      <td className="py-1.5">
                        <Badge tone={STATUS_TONE[t.status] ?? "neutral"}>{t.status}</Badge>
                      </td>
                      <td className="py-1.5 pr-4">
                        <Progress value={t.rowsCopied} total={t.rowsTotal} label={`${t.table} progress`} />
                      </td>
                      <td className="py-1.5 text-right tabular-nums">
                        {nf.format(t.rowsCopied)} / {nf.format(t.rowsTotal)}
                      </td>
                      <TableRate
                        samples={s.samples}
                        table={t.table}
                        status={t.status}
                        remaining={t.rowsTotal - t.rowsCopied}
                      />
                    </tr>
                  ))}
                </tbody>
              </table>
            </Card>
            <CohortProgress planId={planId} />
            <Card
              title="Throughput and lag"
              actions={<WindowSelect id="window" minutes={minutes} onChange={setMinutes} />}
            >
              <div className="grid grid-cols-2 gap-4">
                <div>
                  <h3 className="text-xs font-medium text-slate-700">
                    Backfill copy rate (rows/s, all tables)
                  </h3>
                  <TimeSeriesChart
                    points={rates}
                    unit="rows/s"
                    label="Backfill rows per second"
                    empty="No copy activity in this window."
                  />
                </div>
                <div>
                  <h3 className="text-xs font-medium text-slate-700">
                    CDC lag (commit on legacy → applied on the shards)
                  </h3>
                  <TimeSeriesChart
                    points={lag}
                    unit="ms"
                    label="CDC lag"
                    color="#b45309"
                    empty="No CDC measurements in this window."
                  />
                </div>
              </div>
            </Card>
            <Card title="Engine events" description="Errors, back-offs and stops the engine reported.">
              {s.events.length === 0 ? (
                <p className="text-xs text-slate-500">Nothing to report.</p>
              ) : (
                <ul className="space-y-1 text-xs">
                  {s.events.map((e) => (
                    <li key={e.id} className="flex gap-2">
                      <Badge tone={e.level === "error" ? "danger" : e.level === "warn" ? "warn" : "neutral"}>
                        {e.level}
                      </Badge>
                      <span className="text-slate-500">
                        <Time value={e.at} />
                      </span>
                      <span className="font-mono text-slate-600">{e.source}</span>
                      <span>{e.message}</span>
                    </li>
                  ))}
                </ul>
              )}
            </Card>
          </>
        ) : null}
      </div>
    </>
  );
}

/** A table's own copy rate (its latest sample while it copies) and ETA range. */
function TableRate({
  samples,
  table,
  status,
  remaining,
}: {
  samples: Sample[];
  table: string;
  status: string;
  remaining: number;
}) {
  const series = namedSeries(samples, `backfill.rows_per_s:${table}`);
  const latest = series.at(-1);
  const copying = status === "running" && latest !== undefined && Date.now() - latest.t < 10_000;
  const eta = copying ? etaRange(remaining, series) : null;
  return (
    <>
      <td className="py-1.5 text-right tabular-nums">
        {copying ? `${nf.format(Math.round(latest.value))} rows/s` : "—"}
      </td>
      <td className="py-1.5 text-right tabular-nums">
        {status === "done" ? "done" : eta ? formatEta(eta) : "—"}
      </td>
    </>
  );
}

function Stat({ label, value }: { label: string; value: string }) {
  return (
    <div className="rounded-md border border-slate-200 px-3 py-2">
      <p className="text-xs text-slate-500">{label}</p>
      <p
        className="font-medium tabular-nums"
        data-testid={`stat-${label.toLowerCase().replaceAll(" ", "-")}`}
      >
        {value}
      </p>
    </div>
  );
}

type Status = inferRouterOutputs<AppRouter>["movement"]["status"];

function Controls({
  planId,
  status,
  phase,
  rate,
}: {
  planId: string;
  status: Status;
  phase: string;
  rate: number;
}) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const roleBlock = useRoleBlock("operator");
  const invalidate = () => queryClient.invalidateQueries();
  const start = useMutation(trpc.movement.start.mutationOptions({ onSuccess: invalidate }));
  const control = useMutation(trpc.movement.control.mutationOptions({ onSuccess: invalidate }));
  const setRate = useMutation(trpc.movement.setRate.mutationOptions({ onSuccess: invalidate }));
  const [rateDraft, setRateDraft] = useState(String(rate));
  const [resetShards, setResetShards] = useState(false);
  const [rateError, setRateError] = useState<string | null>(null);
  const m = status.movement;
  const canStart = !m || m.status === "cancelled";
  const phaseBlock = [
    "two_way_cdc",
    "async_backfill",
    "bit_by_bit_routing",
    "automated_parity",
    "live_rollback",
  ].includes(phase)
    ? null
    : "Advance the plan to “Two-way CDC” first.";

  return (
    <Card
      title="Data movement"
      description={
        m
          ? `Slot ${m.slotName} on legacy, started at LSN ${m.slotLsn ?? "?"}${m.confirmedLsn ? `; changes confirmed up to ${m.confirmedLsn}` : ""}.`
          : "Prepares the shards (schema from the legacy catalog), opens a replication slot, then copies every table in chunks while CDC streams new changes."
      }
      actions={
        m ? (
          <Badge tone={STATUS_TONE[m.status] ?? "neutral"}>{`Movement ${m.status}`}</Badge>
        ) : (
          <Badge tone="neutral">Not started</Badge>
        )
      }
    >
      <div className="flex flex-wrap items-end gap-3">
        {canStart ? (
          roleBlock || phaseBlock ? (
            <Button variant="primary" disabledReason={roleBlock ?? phaseBlock}>
              Start backfill and CDC
            </Button>
          ) : (
            <ConfirmDialog
              trigger={<Button variant="primary">Start backfill and CDC</Button>}
              title="Start the data movement"
              scope="Create the schema on every shard, a publication and replication slot on legacy, and copy every table's rows to the shard that owns each tenant, while changes stream through CDC."
              confirmLabel="Start backfill and CDC"
              busy={start.isPending}
              error={start.error ? messageOf(start.error) : null}
              onConfirm={(reason) => start.mutateAsync({ planId, reason, resetShards })}
            >
              <label className="flex items-start gap-2 text-sm">
                <input
                  type="checkbox"
                  className="mt-0.5"
                  checked={resetShards}
                  onChange={(e) => setResetShards(e.target.checked)}
                />
                <span>
                  Empty the shard tables first
                  <span className="block text-xs text-slate-500">
                    Needed when the shards hold rows from an earlier, cancelled movement: this copy cannot
                    know what legacy deleted since.
                  </span>
                </span>
              </label>
            </ConfirmDialog>
          )
        ) : null}
        {m && (m.status === "running" || m.status === "failed") ? (
          <ControlButton
            label={m.status === "failed" ? "Retry" : "Pause"}
            action={m.status === "failed" ? "resume" : "pause"}
            planId={planId}
            roleBlock={roleBlock}
            control={control}
            scope={
              m.status === "failed"
                ? "Resume the data movement from its checkpoints."
                : "Pause the backfill: copying stops after the current chunk; CDC keeps streaming so the shards stay current."
            }
          />
        ) : null}
        {m?.status === "paused" ? (
          <ControlButton
            label="Resume"
            action="resume"
            planId={planId}
            roleBlock={roleBlock}
            control={control}
            scope="Resume copying from each table's checkpoint."
          />
        ) : null}
        {m && ["running", "paused", "failed"].includes(m.status) ? (
          <ControlButton
            label="Cancel"
            action="cancel"
            planId={planId}
            roleBlock={roleBlock}
            control={control}
            danger
            scope="Cancel the data movement: stop copying and streaming, and drop the replication slot and publication on legacy (an orphaned slot would fill its disk). Rows already copied stay on the shards."
          />
        ) : null}
        {m && ["running", "paused"].includes(m.status) ? (
          <form
            className="ml-auto flex items-end gap-2"
            noValidate
            onSubmit={(e) => {
              e.preventDefault();
              const parsed = ZSetRateInput.safeParse({
                planId,
                rowsPerSecond: Number(rateDraft.replaceAll(",", "")),
              });
              if (!parsed.success) {
                setRateError(parsed.error.issues[0]?.message ?? "Invalid rate");
                return;
              }
              setRateError(null);
              setRate.mutate(parsed.data);
            }}
          >
            <Field id="rate" label="Rate limit (rows/s)" errors={rateError ? [rateError] : undefined}>
              <TextInput
                id="rate"
                inputMode="numeric"
                value={rateDraft}
                onChange={(e) => setRateDraft(e.target.value)}
                className="w-36"
                disabled={Boolean(roleBlock)}
              />
            </Field>
            <Button type="submit" disabledReason={roleBlock} busy={setRate.isPending}>
              Set rate
            </Button>
          </form>
        ) : null}
      </div>
      {m?.lastError ? (
        <div className="mt-3">
          <Alert tone="error" title="The engine stopped">
            {m.lastError}
          </Alert>
        </div>
      ) : null}
      {control.error ? (
        <div className="mt-3">
          <Alert tone="error" title={messageOf(control.error)} />
        </div>
      ) : null}
      {setRate.error ? (
        <div className="mt-3">
          <Alert tone="error" title={messageOf(setRate.error)} />
        </div>
      ) : null}
    </Card>
  );
}

function ControlButton({
  label,
  action,
  planId,
  roleBlock,
  control,
  scope,
  danger,
}: {
  label: string;
  action: "pause" | "resume" | "cancel";
  planId: string;
  roleBlock: string | null;
  control: {
    isPending: boolean;
    error: unknown;
    mutateAsync: (input: {
      planId: string;
      action: "pause" | "resume" | "cancel";
      reason: string;
    }) => Promise<unknown>;
  };
  scope: string;
  danger?: boolean;
}) {
  if (roleBlock) return <Button disabledReason={roleBlock}>{label}</Button>;
  return (
    <ConfirmDialog
      trigger={<Button variant={danger ? "danger" : "secondary"}>{label}</Button>}
      title={`${label} the data movement`}
      scope={scope}
      confirmLabel={label}
      tone={danger ? "danger" : "primary"}
      busy={control.isPending}
      error={control.error ? messageOf(control.error) : null}
      onConfirm={(reason) => control.mutateAsync({ planId, action, reason })}
    />
  );
}
