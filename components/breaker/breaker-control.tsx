"use client";

// The breaker's controls, in every plan header (and per cohort on the cohorts page): "Trip
// breaker…" opens a dialog that picks the scope, shows the dry run in words from breaker.preview
// (how many tenants, on which shards, how long their writes pause, anything that would refuse it),
// takes a reason, trips, then follows the rollback live to its outcome. Admins re-arm an ended trip
// with a reason. Viewers see the controls disabled with the role needed; the API refuses them too.
import * as Dialog from "@radix-ui/react-dialog";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type ReactNode, useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { useRoleBlock } from "@/components/providers/user";
import { Alert } from "@/components/ui/alert";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { Field, TextArea } from "@/components/ui/field";
import { messageOf } from "@/components/ui/field-errors";
import {
  BREAKER_STATE_WORDS,
  type BreakerState,
  durationText,
  rearmable,
  type ScopeForm,
  type ScopeKind,
  scopeOfForm,
  tripInFlight,
  tripOutcome,
} from "./breaker-words";

/** How often the dialog re-reads a trip in flight: a rollback's steps take tens of milliseconds. */
const FOLLOW_MS = 1_000;

export interface BreakerPlan {
  id: string;
  shards: { id: string; name: string }[];
}

/** The header's pair of buttons: trip (operators) and, once a trip has ended, re-arm (admins). */
export function BreakerControls({ plan, state }: { plan: BreakerPlan; state: BreakerState | null }) {
  const operatorBlock = useRoleBlock("operator");
  const inFlight = state !== null && tripInFlight(state);
  const flightBlock = inFlight
    ? "The breaker is rolling tenants back now: wait for that rollback to end."
    : null;
  return (
    <div className="flex flex-wrap items-center gap-2" data-testid="breaker-controls">
      {operatorBlock ? (
        // The reason is the button's tooltip: the header has no room for a sentence under it.
        <Button variant="danger" disabled title={operatorBlock} data-testid="breaker-trip-button">
          Trip breaker…
        </Button>
      ) : (
        // Mounted while a trip is in flight too (only its trigger disabled): the open dialog follows
        // the trip it made, and must not vanish when the header learns that trip is in flight.
        <TripBreakerDialog
          plan={plan}
          trigger={
            <Button
              variant="danger"
              disabled={inFlight}
              title={flightBlock ?? undefined}
              data-testid="breaker-trip-button"
            >
              Trip breaker…
            </Button>
          }
        />
      )}
      {state !== null && rearmable(state) ? <RearmButton planId={plan.id} /> : null}
    </div>
  );
}

function RearmButton({ planId }: { planId: string }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const adminBlock = useRoleBlock("admin");
  const rearm = useMutation(
    trpc.breaker.rearm.mutationOptions({ onSuccess: () => queryClient.invalidateQueries() }),
  );
  if (adminBlock) {
    return (
      <Button disabled title={adminBlock} data-testid="breaker-rearm-button">
        Re-arm…
      </Button>
    );
  }
  return (
    <ConfirmDialog
      trigger={<Button data-testid="breaker-rearm-button">Re-arm…</Button>}
      title="Re-arm the breaker"
      scope="The breaker reads armed again and cohorts may be promoted once their gates pass. The tenants it rolled back stay on legacy until they are cut over again."
      confirmLabel="Re-arm the breaker"
      dismissLabel="Keep it tripped"
      busy={rearm.isPending}
      error={rearm.error ? messageOf(rearm.error) : null}
      onConfirm={(reason) => rearm.mutateAsync({ planId, reason })}
    />
  );
}

const SCOPE_CHOICES: { kind: ScopeKind; label: string }[] = [
  { kind: "shard", label: "Every tenant on one shard" },
  { kind: "tenants", label: "Named tenants" },
  { kind: "cohort", label: "A cohort" },
  { kind: "all", label: "Every tenant on the shards" },
];

/** The trip dialog; `initial` presets the scope (the cohorts page opens it on one cohort). */
export function TripBreakerDialog({
  plan,
  trigger,
  initial,
}: {
  plan: BreakerPlan;
  trigger: ReactNode;
  initial?: Partial<ScopeForm>;
}) {
  const [open, setOpen] = useState(false);
  return (
    <Dialog.Root open={open} onOpenChange={setOpen}>
      <Dialog.Trigger asChild>{trigger}</Dialog.Trigger>
      {open ? <TripDialogContent plan={plan} initial={initial} onClose={() => setOpen(false)} /> : null}
    </Dialog.Root>
  );
}

function TripDialogContent({
  plan,
  initial,
  onClose,
}: {
  plan: BreakerPlan;
  initial: Partial<ScopeForm> | undefined;
  onClose: () => void;
}) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [form, setForm] = useState<ScopeForm>({
    kind: "shard",
    tenants: "",
    databaseId: plan.shards[0]?.id ?? "",
    ordinal: null,
    andLater: false,
    ...initial,
  });
  const [reason, setReason] = useState("");
  const [touched, setTouched] = useState(false);
  const [tripId, setTripId] = useState<string | null>(null);
  const named = scopeOfForm(form);
  const scope = "scope" in named ? named.scope : null;
  const cohorts = useQuery({
    ...trpc.cohorts.list.queryOptions({ planId: plan.id, limit: 0 }),
    enabled: form.kind === "cohort",
  });
  const preview = useQuery({
    ...trpc.breaker.preview.queryOptions({ planId: plan.id, scope: scope ?? { kind: "all" } }),
    enabled: scope !== null && tripId === null,
    refetchInterval: 3_000,
  });
  const trip = useMutation(
    trpc.breaker.trip.mutationOptions({
      onSuccess: ({ tripId: id }) => {
        setTripId(id);
        void queryClient.invalidateQueries({ queryKey: trpc.figures.pathKey() });
        void queryClient.invalidateQueries({ queryKey: trpc.breaker.pathKey() });
      },
    }),
  );
  const reasonError =
    reason.trim().length < 3 ? "Say why (at least 3 characters): it goes into the audit log" : null;
  const p = scope ? preview.data : undefined;
  const blockers = p?.blockers ?? [];
  const confirmBlock = !p
    ? "Wait for the dry run."
    : blockers.length > 0
      ? "The dry run found what would refuse the trip (above)."
      : null;
  const set = (patch: Partial<ScopeForm>) => setForm((f) => ({ ...f, ...patch }));
  const ladder = cohorts.data?.drawn ? cohorts.data.cohorts : [];

  return (
    <Dialog.Portal>
      <Dialog.Overlay className="fixed inset-0 bg-slate-900/40" />
      <Dialog.Content
        data-testid="breaker-dialog"
        className="fixed top-1/2 left-1/2 max-h-[92vh] w-[38rem] max-w-[94vw] -translate-x-1/2 -translate-y-1/2 overflow-y-auto rounded-lg bg-white p-5 shadow-xl"
      >
        <Dialog.Title className="text-base font-semibold text-slate-900">
          Trip the breaker: tenants back to legacy
        </Dialog.Title>
        {tripId ? (
          <FollowTrip planId={plan.id} tripId={tripId} onClose={onClose} />
        ) : (
          <form
            className="mt-3 space-y-4"
            onSubmit={(event) => {
              event.preventDefault();
              setTouched(true);
              if (reasonError || confirmBlock || !scope) return;
              trip.mutate({ planId: plan.id, scope, reason: reason.trim() });
            }}
          >
            <Dialog.Description className="text-sm text-slate-700">
              Every tenant of the scope that a shard owns goes back to legacy in one step, with no
              acknowledged write lost. Nothing changes until you confirm.
            </Dialog.Description>
            <fieldset className="space-y-2">
              <legend className="text-xs font-medium text-slate-700">What to roll back</legend>
              <div className="grid grid-cols-2 gap-1.5">
                {SCOPE_CHOICES.map((c) => (
                  <label
                    key={c.kind}
                    className={`flex cursor-pointer items-center gap-2 rounded-md border px-2.5 py-1.5 text-sm ${form.kind === c.kind ? "border-sky-600 bg-sky-50" : "border-slate-200"}`}
                  >
                    <input
                      type="radio"
                      name="breaker-scope"
                      checked={form.kind === c.kind}
                      onChange={() => set({ kind: c.kind })}
                    />
                    {c.label}
                  </label>
                ))}
              </div>
              {form.kind === "shard" ? (
                <Field id="breaker-shard" label="Shard">
                  <select
                    id="breaker-shard"
                    value={form.databaseId}
                    onChange={(e) => set({ databaseId: e.target.value })}
                    className="block w-full rounded-md border border-slate-300 bg-white px-2.5 py-1.5 text-sm"
                  >
                    {plan.shards.map((s) => (
                      <option key={s.id} value={s.id}>
                        {s.name}
                      </option>
                    ))}
                  </select>
                </Field>
              ) : null}
              {form.kind === "tenants" ? (
                <Field id="breaker-tenants" label="Tenant keys" hint="One a line, or separated by commas.">
                  <TextArea
                    id="breaker-tenants"
                    rows={2}
                    value={form.tenants}
                    onChange={(e) => set({ tenants: e.target.value })}
                  />
                </Field>
              ) : null}
              {form.kind === "cohort" ? (
                <div className="grid grid-cols-2 items-end gap-2">
                  <Field id="breaker-cohort" label="Cohort">
                    <select
                      id="breaker-cohort"
                      value={form.ordinal ?? ""}
                      onChange={(e) => set({ ordinal: e.target.value ? Number(e.target.value) : null })}
                      className="block w-full rounded-md border border-slate-300 bg-white px-2.5 py-1.5 text-sm"
                    >
                      <option value="">{cohorts.isLoading ? "Loading the ladder…" : "Choose…"}</option>
                      {ladder.map((c) => (
                        <option key={c.ordinal} value={c.ordinal}>
                          {c.ordinal}. {c.label} ({c.tenants} tenants)
                        </option>
                      ))}
                    </select>
                  </Field>
                  <label className="flex items-center gap-2 pb-2 text-sm">
                    <input
                      type="checkbox"
                      checked={form.andLater}
                      onChange={(e) => set({ andLater: e.target.checked })}
                    />
                    and every later cohort
                  </label>
                </div>
              ) : null}
            </fieldset>

            <section
              aria-label="Dry run"
              className="space-y-2 rounded-md border border-slate-200 bg-slate-50 p-3 text-sm"
            >
              <p className="text-xs font-medium tracking-wide text-slate-500 uppercase">
                Dry run: nothing has changed yet
              </p>
              {"missing" in named ? <p className="text-slate-600">{named.missing}</p> : null}
              {scope && preview.error ? <Alert tone="error" title={messageOf(preview.error)} /> : null}
              {scope && !p && preview.isLoading ? <p className="text-slate-500">Reading the map…</p> : null}
              {p ? (
                <>
                  <p className="font-medium text-slate-900" data-testid="breaker-preview-summary">
                    {p.summary}
                  </p>
                  <dl className="grid grid-cols-3 gap-2 text-xs">
                    <div>
                      <dt className="text-slate-500">Tenants to roll back</dt>
                      <dd className="text-base font-semibold" data-testid="breaker-preview-count">
                        {p.tenantCount}
                      </dd>
                    </div>
                    <div>
                      <dt className="text-slate-500">Reverse lag</dt>
                      <dd>{p.reverseLagMs === null ? "not measured" : durationText(p.reverseLagMs)}</dd>
                    </div>
                    <div>
                      <dt className="text-slate-500">Cutovers in flight</dt>
                      <dd>{p.cutoversInFlight === 0 ? "none" : `${p.cutoversInFlight} (waited for)`}</dd>
                    </div>
                  </dl>
                  {p.tenants.length > 0 ? (
                    <p className="text-xs text-slate-600">
                      Tenants: <span className="font-mono">{p.tenants.join(", ")}</span>
                      {p.tenantCount > p.tenants.length
                        ? ` and ${p.tenantCount - p.tenants.length} more`
                        : ""}
                      {p.byShard.length > 1
                        ? ` (${p.byShard.map((s) => `${s.tenants} on ${s.name}`).join(", ")})`
                        : ""}
                    </p>
                  ) : null}
                  {p.alreadyOnLegacy.length > 0 ? (
                    <p className="text-xs text-slate-600">
                      Already on legacy (nothing to do):{" "}
                      <span className="font-mono">{p.alreadyOnLegacy.join(", ")}</span>
                    </p>
                  ) : null}
                  {blockers.length > 0 ? (
                    <Alert tone="warn" title="Tripping now would be refused">
                      <ul className="list-disc pl-4" data-testid="breaker-blockers">
                        {blockers.map((b) => (
                          <li key={b}>{b}</li>
                        ))}
                      </ul>
                    </Alert>
                  ) : null}
                </>
              ) : null}
            </section>

            <Field
              id="breaker-reason"
              label="Reason (recorded in the audit log)"
              errors={touched && reasonError ? [reasonError] : undefined}
            >
              <TextArea
                id="breaker-reason"
                rows={2}
                value={reason}
                onChange={(e) => setReason(e.target.value)}
                invalid={Boolean(touched && reasonError)}
              />
            </Field>
            {trip.error ? <Alert tone="error" title={messageOf(trip.error)} /> : null}
            <div className="flex items-start justify-end gap-2">
              <Dialog.Close asChild>
                <Button variant="ghost">Leave it armed</Button>
              </Dialog.Close>
              <Button type="submit" variant="danger" busy={trip.isPending} disabledReason={confirmBlock}>
                {p && p.tenantCount > 0
                  ? `Trip: roll back ${p.tenantCount} tenant${p.tenantCount === 1 ? "" : "s"}`
                  : "Trip the breaker"}
              </Button>
            </div>
          </form>
        )}
      </Dialog.Content>
    </Dialog.Portal>
  );
}

/** After the trip: the rollback's state, read again every second until it has ended, then what it did. */
function FollowTrip({ planId, tripId, onClose }: { planId: string; tripId: string; onClose: () => void }) {
  const trpc = useTRPC();
  const history = useQuery({
    ...trpc.breaker.history.queryOptions({ planId, limit: 5 }),
    refetchInterval: (query) => {
      const t = query.state.data?.trips.find((x) => x.id === tripId);
      return t && !tripInFlight(t.status) ? false : FOLLOW_MS;
    },
  });
  const t = history.data?.trips.find((x) => x.id === tripId);
  const outcome = t ? tripOutcome(t) : null;
  const ok = t?.status === "rolled_back";
  return (
    <div className="mt-3 space-y-3 text-sm" data-testid="breaker-follow">
      {t ? (
        <>
          <p>
            {t.scopeLabel[0]?.toUpperCase()}
            {t.scopeLabel.slice(1)} ·{" "}
            <span data-testid="breaker-follow-status">
              <Badge tone={BREAKER_STATE_WORDS[t.status].tone}>{BREAKER_STATE_WORDS[t.status].word}</Badge>
            </span>
          </p>
          <ol className="space-y-0.5 text-xs text-slate-600">
            {t.steps.map((s) => (
              <li key={`${s.status}-${s.at}`}>
                <span className="font-mono">{new Date(s.at).toLocaleTimeString()}</span>{" "}
                {s.status.replace("_", " ")}
                {s.note ? ` — ${s.note}` : ""}
              </li>
            ))}
          </ol>
          {outcome ? (
            <div data-testid="breaker-outcome">
              <Alert tone={ok ? "ok" : "error"} title={ok ? "Rolled back" : "The rollback failed"}>
                {outcome}
              </Alert>
            </div>
          ) : (
            <p className="text-slate-600">
              Freezing the tenants, draining their shards' writes to legacy, then one flip of the map…
            </p>
          )}
        </>
      ) : (
        <p className="text-slate-500">Tripped; reading its progress…</p>
      )}
      {history.error ? <Alert tone="error" title={messageOf(history.error)} /> : null}
      <div className="flex justify-end">
        <Button onClick={onClose}>Close</Button>
      </div>
    </div>
  );
}
