"use client";

import { useMutation, useQuery } from "@tanstack/react-query";
import { useSearchParams } from "next/navigation";
import { useMemo, useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { Alert } from "@/components/ui/alert";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, PageTitle } from "@/components/ui/card";
import { Field, SelectInput, TextInput } from "@/components/ui/field";
import { type FieldErrors, fieldErrorsFromZod, messageOf } from "@/components/ui/field-errors";
import { QueryState } from "@/components/ui/query-state";
import { type TAuditFilter, ZAuditFilter } from "@/server/schemas/audit";
import { AuditTable } from "./audit-table";

interface Draft {
  actorEmail: string;
  action: string;
  planId: string;
  from: string;
  to: string;
}

const PAGE_SIZE = 25;

function toFilter(draft: Draft): unknown {
  return {
    actorEmail: draft.actorEmail || undefined,
    action: draft.action || undefined,
    planId: draft.planId || undefined,
    from: draft.from ? new Date(draft.from) : undefined,
    to: draft.to ? new Date(draft.to) : undefined,
  };
}

export function AuditLog() {
  const trpc = useTRPC();
  const params = useSearchParams();
  const initial: Draft = { actorEmail: "", action: "", planId: params.get("planId") ?? "", from: "", to: "" };
  const [draft, setDraft] = useState<Draft>(initial);
  const [filter, setFilter] = useState<TAuditFilter>(ZAuditFilter.parse(toFilter(initial)));
  const [errors, setErrors] = useState<FieldErrors>({});
  // Cursors of the pages before this one, so "Newer" can go back.
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const cursor = cursors.at(-1);
  const events = useQuery({
    ...trpc.audit.list.queryOptions({ filter, cursor, limit: PAGE_SIZE }),
    refetchInterval: 15_000,
  });
  const actions = useQuery(trpc.audit.actions.queryOptions());
  const plans = useQuery(trpc.plans.list.queryOptions({ includeArchived: true }));
  const verify = useMutation(trpc.audit.verify.mutationOptions());

  const exportQuery = useMemo(() => {
    const q = new URLSearchParams();
    if (filter.actorEmail) q.set("actorEmail", filter.actorEmail);
    if (filter.action) q.set("action", filter.action);
    if (filter.planId) q.set("planId", filter.planId);
    if (filter.from) q.set("from", filter.from.toISOString());
    if (filter.to) q.set("to", filter.to.toISOString());
    return q.toString();
  }, [filter]);

  function apply(event: React.FormEvent) {
    event.preventDefault();
    const parsed = ZAuditFilter.safeParse(toFilter(draft));
    if (!parsed.success) {
      setErrors(fieldErrorsFromZod(parsed.error));
      return;
    }
    setErrors({});
    setFilter(parsed.data);
    setCursors([undefined]);
  }

  const page = cursors.length;
  const total = events.data?.total ?? 0;

  return (
    <>
      <PageTitle
        title="Audit log"
        subtitle="Every change to the control plane: who, in which role, what, on which target, before and after, and why. Append-only and hash-chained: verification recomputes every link."
        actions={
          <>
            <a
              className="rounded-md border border-slate-300 bg-white px-3 py-1.5 text-sm font-medium hover:bg-slate-100"
              href={`/api/audit/export?format=csv&${exportQuery}`}
              download
            >
              Export CSV
            </a>
            <a
              className="rounded-md border border-slate-300 bg-white px-3 py-1.5 text-sm font-medium hover:bg-slate-100"
              href={`/api/audit/export?format=json&${exportQuery}`}
              download
            >
              Export JSON
            </a>
            <Button variant="primary" busy={verify.isPending} onClick={() => verify.mutate()}>
              Verify chain
            </Button>
          </>
        }
      />
      <div className="mb-4" aria-live="polite">
        {verify.data ? (
          verify.data.ok ? (
            <Alert
              tone="ok"
              title={`Chain verified: all ${verify.data.checked.toLocaleString()} events match their hashes.`}
            >
              <span className="font-mono text-xs">head {verify.data.headHash}</span>
            </Alert>
          ) : (
            <Alert
              tone="error"
              title={`Chain broken at event #${verify.data.brokenAt?.seq}: ${verify.data.brokenAt?.problem}.`}
            >
              {verify.data.checked.toLocaleString()} events before it verified. Events from #
              {verify.data.brokenAt?.seq} on cannot be trusted; restore the audit table from a backup and
              investigate who had superuser access.
            </Alert>
          )
        ) : null}
        {verify.error ? <Alert tone="error" title={messageOf(verify.error)} /> : null}
      </div>
      <Card title="Filter">
        <form onSubmit={apply} noValidate className="grid grid-cols-6 items-end gap-3">
          <Field id="f-actor" label="Actor (email contains)" errors={errors.actorEmail}>
            <TextInput
              id="f-actor"
              value={draft.actorEmail}
              onChange={(e) => setDraft({ ...draft, actorEmail: e.target.value })}
            />
          </Field>
          <Field id="f-action" label="Action" errors={errors.action}>
            <SelectInput
              id="f-action"
              value={draft.action}
              onChange={(e) => setDraft({ ...draft, action: e.target.value })}
            >
              <option value="">Any</option>
              {(actions.data ?? []).map((a) => (
                <option key={a} value={a}>
                  {a}
                </option>
              ))}
            </SelectInput>
          </Field>
          <Field id="f-plan" label="Plan" errors={errors.planId}>
            <SelectInput
              id="f-plan"
              value={draft.planId}
              onChange={(e) => setDraft({ ...draft, planId: e.target.value })}
            >
              <option value="">Any</option>
              {(plans.data ?? []).map((p) => (
                <option key={p.id} value={p.id}>
                  {p.name}
                </option>
              ))}
            </SelectInput>
          </Field>
          <Field id="f-from" label="From (your time zone)" errors={errors.from}>
            <TextInput
              id="f-from"
              type="datetime-local"
              value={draft.from}
              onChange={(e) => setDraft({ ...draft, from: e.target.value })}
            />
          </Field>
          <Field id="f-to" label="To" errors={errors.to}>
            <TextInput
              id="f-to"
              type="datetime-local"
              value={draft.to}
              onChange={(e) => setDraft({ ...draft, to: e.target.value })}
              invalid={Boolean(errors.to)}
            />
          </Field>
          <div className="flex gap-2">
            <Button type="submit" variant="primary">
              Apply
            </Button>
            <Button
              variant="ghost"
              onClick={() => {
                const empty = { actorEmail: "", action: "", planId: "", from: "", to: "" };
                setDraft(empty);
                setFilter({});
                setErrors({});
                setCursors([undefined]);
              }}
            >
              Clear
            </Button>
          </div>
        </form>
      </Card>
      <Card
        className="mt-4"
        title={events.data ? `${total.toLocaleString()} event${total === 1 ? "" : "s"}` : "Events"}
        description="Newest first."
        actions={
          <>
            <span className="text-xs text-slate-500">Page {page}</span>
            <Button disabled={cursors.length <= 1} onClick={() => setCursors(cursors.slice(0, -1))}>
              ← Newer
            </Button>
            <Button
              disabled={!events.data?.nextCursor}
              onClick={() => events.data?.nextCursor && setCursors([...cursors, events.data.nextCursor])}
            >
              Older →
            </Button>
          </>
        }
      >
        <QueryState isLoading={events.isLoading} error={events.error} what="audit events" />
        {events.data ? <AuditTable events={events.data.events} /> : null}
        {filter.planId ? (
          <p className="mt-2 text-xs text-slate-500">
            <Badge tone="info">Filtered</Badge> to one plan.
          </p>
        ) : null}
      </Card>
    </>
  );
}
