"use client";

// Start, pause, resume, retry and cancel of a plan's data movement, and its rate. Every button
// names its action, in the dialog too ("Cancel the movement" / "Keep it running"); an action the
// server would refuse is shown disabled with the server's reason (role, phase, cancel guard).
import { matchQuery, type Query, useMutation, useQueryClient } from "@tanstack/react-query";
import type { inferRouterOutputs } from "@trpc/server";
import { useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { useRoleBlock } from "@/components/providers/user";
import { Alert } from "@/components/ui/alert";
import { Badge, type Tone } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card } from "@/components/ui/card";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { Field, TextInput } from "@/components/ui/field";
import { messageOf } from "@/components/ui/field-errors";
import { ZSetRateInput } from "@/server/schemas/movement";
import type { AppRouter } from "@/server/trpc/root";

type Status = inferRouterOutputs<AppRouter>["movement"]["status"];
type CancelOutcome = inferRouterOutputs<AppRouter>["plans"]["byId"]["movementCancel"];
type Action = "pause" | "resume" | "cancel";

const MOVEMENT_TONE: Record<string, Tone> = {
  running: "info",
  paused: "warn",
  pausing: "warn",
  preparing: "info",
  cancelling: "warn",
  cancelled: "neutral",
  failed: "danger",
};

const MOVEMENT_PHASES = [
  "two_way_cdc",
  "async_backfill",
  "bit_by_bit_routing",
  "automated_parity",
  "live_rollback",
];

/** "paused" in the store takes effect as each copier finishes what it is doing: until then, "pausing". */
export function movementLabel(m: NonNullable<Status["movement"]>): string {
  if (m.status === "paused" && m.copiersActive > 0) return "pausing";
  return m.status;
}

export function MovementControls({
  planId,
  status,
  phase,
  rate,
  cancel,
}: {
  planId: string;
  status: Status;
  phase: string;
  rate: number;
  cancel: CancelOutcome;
}) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const roleBlock = useRoleBlock("operator");
  // After an action the controls' own state (the movement's status, the plan) is refetched before
  // the dialog closes, so it closes on the new state; the rest of the page (charts, cohorts,
  // figures) refreshes behind it. Awaiting every query kept a pause's dialog busy for as long as
  // the slowest one took (the cohort query once took minutes).
  const invalidate = async () => {
    const own = [trpc.movement.status.pathKey(), trpc.plans.byId.pathKey()];
    const isOwn = (query: Query) => own.some((queryKey) => matchQuery({ queryKey }, query));
    void queryClient.invalidateQueries({ predicate: (query) => !isOwn(query) });
    await queryClient.invalidateQueries({ predicate: isOwn });
  };
  const start = useMutation(trpc.movement.start.mutationOptions({ onSuccess: invalidate }));
  const control = useMutation(trpc.movement.control.mutationOptions({ onSuccess: invalidate }));
  const setRate = useMutation(trpc.movement.setRate.mutationOptions({ onSuccess: invalidate }));
  const [rateDraft, setRateDraft] = useState(String(rate));
  const [resetShards, setResetShards] = useState(false);
  const [rateError, setRateError] = useState<string | null>(null);
  const m = status.movement;
  const canStart = !m || m.status === "cancelled";
  const phaseBlock = MOVEMENT_PHASES.includes(phase) ? null : "Advance the plan to “Two-way CDC” first.";
  const label = m ? movementLabel(m) : null;

  return (
    <Card
      title="Data movement"
      description={
        m
          ? `Slot ${m.slotName} on legacy, started at LSN ${m.slotLsn ?? "?"}${m.confirmedLsn ? `; changes confirmed up to ${m.confirmedLsn}` : ""}.`
          : "Prepares the shards (schema from the legacy catalog), opens a replication slot, then copies every table in chunks while CDC streams new changes."
      }
      actions={
        m && label ? (
          <Badge tone={MOVEMENT_TONE[label] ?? "neutral"}>
            {label === "pausing" ? "Movement pausing…" : `Movement ${label}`}
          </Badge>
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
              dismissLabel="Do not start"
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
            confirmLabel={m.status === "failed" ? "Retry the movement" : "Pause the backfill"}
            dismissLabel={m.status === "failed" ? "Leave it stopped" : "Keep it running"}
            action={m.status === "failed" ? "resume" : "pause"}
            planId={planId}
            blocked={roleBlock}
            control={control}
            scope={
              m.status === "failed"
                ? "Resume the data movement from its checkpoints."
                : "Pause the backfill: copying stops within about a second; CDC keeps streaming so the shards stay current."
            }
          />
        ) : null}
        {m?.status === "paused" ? (
          <ControlButton
            label="Resume"
            confirmLabel="Resume the backfill"
            dismissLabel="Keep it paused"
            action="resume"
            planId={planId}
            blocked={roleBlock}
            control={control}
            scope="Resume copying from each table's checkpoint."
          />
        ) : null}
        {m && ["preparing", "running", "paused", "failed"].includes(m.status) ? (
          <ControlButton
            label="Cancel the movement"
            confirmLabel="Cancel the movement"
            dismissLabel={m.status === "paused" ? "Keep it paused" : "Keep it running"}
            action="cancel"
            planId={planId}
            blocked={roleBlock ?? (cancel.allowed ? null : cancel.reason)}
            control={control}
            danger
            scope="Cancel the data movement: stop copying and streaming, and drop the replication slot and publication on legacy (an orphaned slot would fill its disk). Rows already copied stay on the shards."
          />
        ) : null}
        {m && ["running", "paused"].includes(m.status) ? (
          <div className="ml-auto flex items-end gap-2">
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
            {roleBlock ? (
              <Button disabledReason={roleBlock}>Set rate</Button>
            ) : (
              // A rate change is production-changing like the others: it asks for a reason.
              <ConfirmDialog
                trigger={<Button>Set rate</Button>}
                title="Change the backfill rate"
                scope={`Set the backfill's rate limit to ${formatRateDraft(rateDraft)} rows/s (now ${rate.toLocaleString("en-US")} rows/s). Tables being copied pick it up within a second.`}
                confirmLabel="Set rate"
                dismissLabel="Keep the current rate"
                busy={setRate.isPending}
                error={rateError ?? (setRate.error ? messageOf(setRate.error) : null)}
                onConfirm={async (reason) => {
                  const parsed = ZSetRateInput.safeParse({
                    planId,
                    rowsPerSecond: Number(rateDraft.replaceAll(",", "")),
                    reason,
                  });
                  if (!parsed.success) {
                    setRateError(parsed.error.issues[0]?.message ?? "Invalid rate");
                    throw parsed.error;
                  }
                  setRateError(null);
                  return setRate.mutateAsync(parsed.data);
                }}
              />
            )}
          </div>
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
    </Card>
  );
}

/** The typed rate as the dialog names it: "100000" → "100,000"; anything else as typed. */
function formatRateDraft(draft: string): string {
  const value = Number(draft.replaceAll(",", ""));
  return draft.trim() && Number.isFinite(value) ? value.toLocaleString("en-US") : draft.trim() || "?";
}

function ControlButton({
  label,
  confirmLabel,
  dismissLabel,
  action,
  planId,
  blocked,
  control,
  scope,
  danger,
}: {
  label: string;
  confirmLabel: string;
  dismissLabel: string;
  action: Action;
  planId: string;
  /** Why the action is not available (role, or the server's rule): shown beside the disabled button. */
  blocked: string | null;
  control: {
    isPending: boolean;
    error: unknown;
    mutateAsync: (input: { planId: string; action: Action; reason: string }) => Promise<unknown>;
  };
  scope: string;
  danger?: boolean;
}) {
  if (blocked) return <Button disabledReason={blocked}>{label}</Button>;
  return (
    <ConfirmDialog
      trigger={<Button variant={danger ? "danger" : "secondary"}>{label}</Button>}
      title={`${confirmLabel}?`}
      scope={scope}
      confirmLabel={confirmLabel}
      dismissLabel={dismissLabel}
      tone={danger ? "danger" : "primary"}
      busy={control.isPending}
      error={control.error ? messageOf(control.error) : null}
      onConfirm={(reason) => control.mutateAsync({ planId, action, reason })}
    />
  );
}
