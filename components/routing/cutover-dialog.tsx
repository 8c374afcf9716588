"use client";

// Cut one tenant over (or back to legacy) from the routing page. The dialog shows the dry run first
// (what will happen, the lag, the expected freeze and anything that would stop it), takes a reason,
// then follows the attempt live until it is done or aborted, and says what happened.
import * as Dialog from "@radix-ui/react-dialog";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { useRoleBlock } from "@/components/providers/user";
import { Alert } from "@/components/ui/alert";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Field } from "@/components/ui/field";
import { messageOf } from "@/components/ui/field-errors";
import {
  CUTOVER_STEPS,
  cutoverButtonLabel,
  cutoverEnded,
  dryRunSentence,
  durationText,
  outcomeText,
  statusInfo,
} from "./cutover-words";

/** How often the dialog re-reads a running attempt: a cutover's steps take tens of milliseconds. */
const FOLLOW_MS = 500;

export function CutoverButton({
  planId,
  tenantKey,
  owner,
}: {
  planId: string;
  tenantKey: string;
  owner: { name: string; kind: "legacy" | "shard" };
}) {
  const trpc = useTRPC();
  const roleBlock = useRoleBlock("operator");
  const [open, setOpen] = useState(false);
  // The preview names the target shard for the button; viewers see it too (disabled).
  const preview = useQuery({
    ...trpc.routing.cutoverPreview.queryOptions({ planId, tenantKey }),
    refetchInterval: 10_000,
  });
  const label = cutoverButtonLabel(owner, preview.data?.to.name ?? null);
  const p = preview.data;
  const what = p
    ? `Moves tenant ${tenantKey}'s writes from ${p.from.name} to ${p.to.name}. They pause for at most ${durationText(p.budgetMs)} while ${p.to.name} catches up; you see a dry run first.`
    : null;
  const explained = (button: React.ReactNode) => (
    <div className="flex items-start gap-3 rounded-md border border-slate-200 bg-slate-50 px-3 py-2">
      <span data-testid="cutover-button" className="shrink-0">
        {button}
      </span>
      {what ? <p className="pt-1.5 text-xs text-slate-600">{what}</p> : null}
    </div>
  );
  if (roleBlock) {
    return explained(
      <Button variant="primary" disabledReason={roleBlock}>
        {label}
      </Button>,
    );
  }
  return (
    <Dialog.Root open={open} onOpenChange={setOpen}>
      {explained(
        <Dialog.Trigger asChild>
          <Button variant="primary">{label}</Button>
        </Dialog.Trigger>,
      )}
      {open ? (
        <CutoverDialogContent
          planId={planId}
          tenantKey={tenantKey}
          // Named once, when opened: the owner changes as the attempt finishes, the dialog's subject does not.
          initialTitle={
            owner.kind === "shard" ? `Tenant ${tenantKey} back to legacy` : `Cut tenant ${tenantKey} over`
          }
          onClose={() => setOpen(false)}
        />
      ) : null}
    </Dialog.Root>
  );
}

function CutoverDialogContent({
  planId,
  tenantKey,
  initialTitle,
  onClose,
}: {
  planId: string;
  tenantKey: string;
  initialTitle: string;
  onClose: () => void;
}) {
  const [title] = useState(initialTitle);
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  // The same query as the button's (one cache entry): re-read while the dialog is open, so the lag
  // and the blockers are current when the operator confirms.
  const preview = useQuery({
    ...trpc.routing.cutoverPreview.queryOptions({ planId, tenantKey }),
    refetchInterval: 2_000,
  });
  const [reason, setReason] = useState("");
  const [touched, setTouched] = useState(false);
  const [cutoverId, setCutoverId] = useState<string | null>(null);
  const request = useMutation(
    trpc.routing.requestCutover.mutationOptions({
      onSuccess: ({ cutoverId: id }) => {
        setCutoverId(id);
        void queryClient.invalidateQueries({ queryKey: trpc.routing.cutovers.queryKey() });
      },
    }),
  );
  const reasonError =
    reason.trim().length < 3 ? "Say why (at least 3 characters): it goes into the audit log" : null;
  const p = preview.data;
  const blockers = p?.blockers ?? [];

  return (
    <Dialog.Portal>
      <Dialog.Overlay className="fixed inset-0 bg-slate-900/40" />
      <Dialog.Content
        data-testid="cutover-dialog"
        className="fixed top-1/2 left-1/2 max-h-[92vh] w-[36rem] max-w-[94vw] -translate-x-1/2 -translate-y-1/2 overflow-y-auto rounded-lg bg-white p-5 shadow-xl"
      >
        <Dialog.Title className="text-base font-semibold text-slate-900">{title}</Dialog.Title>
        {cutoverId ? (
          <FollowAttempt planId={planId} tenantKey={tenantKey} cutoverId={cutoverId} onClose={onClose} />
        ) : (
          <>
            <Dialog.Description asChild>
              <div className="mt-2 space-y-3 text-sm text-slate-700">
                <p className="text-xs font-medium tracking-wide text-slate-500 uppercase">
                  Dry run: nothing has changed yet
                </p>
                {preview.error ? <Alert tone="error" title={messageOf(preview.error)} /> : null}
                {p ? (
                  <>
                    <p data-testid="cutover-dry-run">{dryRunSentence(p)}</p>
                    <dl className="grid grid-cols-2 gap-x-4 gap-y-1.5 rounded-md border border-slate-200 bg-slate-50 px-3 py-2 text-xs">
                      <dt className="text-slate-500">Owner now → after</dt>
                      <dd data-testid="cutover-route">
                        {p.from.name} → {p.to.name}
                      </dd>
                      <dt className="text-slate-500">Forward lag (legacy → shards)</dt>
                      <dd className="tabular-nums">{lagText(p.forwardLagMs)}</dd>
                      <dt className="text-slate-500">Reverse lag (shards → legacy)</dt>
                      <dd className="tabular-nums">
                        {p.reverseLagMs === null ? "— (not running)" : lagText(p.reverseLagMs)}
                      </dd>
                      <dt className="text-slate-500">Expected freeze</dt>
                      <dd className="tabular-nums" data-testid="cutover-expected-freeze">
                        {p.expectedFreeze === null
                          ? "unknown: no recent lag measurement and no cutover measured yet"
                          : `about ${durationText(p.expectedFreeze.p50Ms)} (p99 ${durationText(p.expectedFreeze.p99Ms)}) — ${p.expectedFreeze.basis}`}
                      </dd>
                      <dt className="text-slate-500">Freeze budget</dt>
                      <dd className="tabular-nums">
                        {durationText(p.budgetMs)} — past it, the cutover aborts and writes resume on{" "}
                        {p.from.name}
                      </dd>
                    </dl>
                    {blockers.length > 0 ? (
                      <Alert tone="warn" title="Cannot cut over now">
                        <ul className="list-disc space-y-1 pl-4" data-testid="cutover-blockers">
                          {blockers.map((b) => (
                            <li key={b}>{b}</li>
                          ))}
                        </ul>
                      </Alert>
                    ) : (
                      <p className="text-xs text-emerald-800" data-testid="cutover-no-blockers">
                        ● Nothing stands in the way.
                      </p>
                    )}
                  </>
                ) : preview.isLoading ? (
                  <p className="text-xs text-slate-500">Working out what would happen…</p>
                ) : null}
              </div>
            </Dialog.Description>
            <form
              className="mt-4 space-y-3"
              onSubmit={(event) => {
                event.preventDefault();
                setTouched(true);
                if (reasonError || blockers.length > 0 || !p) return;
                request.mutate({ planId, tenantKey, reason: reason.trim() });
              }}
            >
              <Field
                id="cutover-reason"
                label="Reason (recorded in the audit log)"
                errors={touched && reasonError ? [reasonError] : undefined}
              >
                <textarea
                  id="cutover-reason"
                  value={reason}
                  onChange={(e) => setReason(e.target.value)}
                  rows={2}
                  aria-invalid={Boolean(touched && reasonError) || undefined}
                  className="block w-full rounded-md border border-slate-300 px-2.5 py-1.5 text-sm focus:border-sky-600 focus:ring-1 focus:ring-sky-600 focus:outline-none"
                />
              </Field>
              {request.error ? <Alert tone="error" title={messageOf(request.error)} /> : null}
              <div className="flex justify-end gap-2">
                <Dialog.Close asChild>
                  <Button variant="ghost">Not now</Button>
                </Dialog.Close>
                <Button
                  type="submit"
                  variant="primary"
                  busy={request.isPending}
                  disabledReason={
                    !p ? null : blockers.length > 0 ? "Resolve what stands in the way first." : null
                  }
                  disabled={!p}
                >
                  {p
                    ? p.direction === "to-shard"
                      ? `Cut over to ${p.to.name}`
                      : "Move back to legacy"
                    : "Cut over"}
                </Button>
              </div>
            </form>
          </>
        )}
      </Dialog.Content>
    </Dialog.Portal>
  );
}

function lagText(ms: number | null): string {
  return ms === null ? "not measured recently" : durationText(ms);
}

/** The attempt's status, re-read every FOLLOW_MS until it ends, then its outcome. */
function FollowAttempt({
  planId,
  tenantKey,
  cutoverId,
  onClose,
}: {
  planId: string;
  tenantKey: string;
  cutoverId: string;
  onClose: () => void;
}) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const attempts = useQuery({
    ...trpc.routing.cutovers.queryOptions({ planId, tenantKey, limit: 5 }),
    refetchInterval: (query) => {
      const a = query.state.data?.find((c) => c.id === cutoverId);
      return a && cutoverEnded(a.status) ? false : FOLLOW_MS;
    },
  });
  const attempt = attempts.data?.find((c) => c.id === cutoverId);
  const ended = attempt ? cutoverEnded(attempt.status) : false;
  useEffect(() => {
    if (!ended) return;
    // The tenant's owner, the map and the plan's figures changed with it: read them again now.
    void queryClient.invalidateQueries({ queryKey: trpc.routing.pathKey() });
    void queryClient.invalidateQueries({ queryKey: trpc.figures.pathKey() });
  }, [ended, queryClient, trpc]);
  const outcome = attempt ? outcomeText(attempt) : null;
  const reached = attempt ? CUTOVER_STEPS.indexOf(attempt.status as (typeof CUTOVER_STEPS)[number]) : -1;
  const info = attempt ? statusInfo(attempt.status) : null;
  return (
    <div className="mt-3 space-y-3 text-sm" data-testid="cutover-follow">
      <Dialog.Description className="text-slate-700">
        {!attempt
          ? "Requested; waiting for its first status…"
          : ended
            ? `${attempt.fromName} → ${attempt.toName}: ended.`
            : `${attempt.fromName} → ${attempt.toName}: requested, following it live.`}
      </Dialog.Description>
      <ol className="flex flex-wrap items-center gap-1 text-xs" aria-label="Cutover steps">
        {CUTOVER_STEPS.map((step, i) => {
          const s = statusInfo(step);
          const state =
            attempt?.status === "aborted" || attempt?.status === "aborting"
              ? "off"
              : i < reached || (i === reached && step === "done")
                ? "done"
                : i === reached
                  ? "now"
                  : "later";
          return (
            <li key={step} className="flex items-center gap-1">
              <span
                aria-current={state === "now" ? "step" : undefined}
                className={`rounded-full px-2 py-0.5 ring-1 ring-inset ${
                  state === "done"
                    ? "bg-emerald-50 text-emerald-800 ring-emerald-600/30"
                    : state === "now"
                      ? "bg-sky-100 font-medium text-sky-900 ring-sky-600/40"
                      : "bg-white text-slate-500 ring-slate-300"
                }`}
              >
                {state === "done" ? "✓ " : state === "now" ? "▶ " : ""}
                {s.label}
              </span>
              {i < CUTOVER_STEPS.length - 1 ? <span className="text-slate-400">›</span> : null}
            </li>
          );
        })}
      </ol>
      {attempt && info ? (
        <p data-testid="cutover-status">
          <Badge tone={info.tone}>{info.label}</Badge> <span className="text-slate-600">{info.meaning}.</span>
        </p>
      ) : null}
      {attempts.error ? <Alert tone="error" title={messageOf(attempts.error)} /> : null}
      {outcome ? (
        <div data-testid="cutover-outcome">
          <Alert tone={outcome.tone} title={outcome.title}>
            {outcome.detail}
          </Alert>
        </div>
      ) : null}
      <div className="flex justify-end">
        <Button variant={outcome ? "primary" : "ghost"} onClick={onClose}>
          {outcome ? "Close" : "Close (it keeps running)"}
        </Button>
      </div>
    </div>
  );
}
