"use client";

import { useMutation, useQuery } from "@tanstack/react-query";
import { usePathname, useRouter, useSearchParams } from "next/navigation";
import { useEffect, useMemo, useState } from "react";
import { useTRPC } from "@/components/providers/trpc";
import { Alert } from "@/components/ui/alert";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card, PageTitle } from "@/components/ui/card";
import { Field, SelectInput, TextInput } from "@/components/ui/field";
import { type FieldErrors, fieldErrorsFromZod, messageOf } from "@/components/ui/field-errors";
import { QueryState } from "@/components/ui/query-state";
import { ZAuditFilter } from "@/server/schemas/audit";
import { AuditDigests } from "./audit-digests";
import { type AuditOrder, AuditTable } from "./audit-table";
import { type AuditDraft, draftFromParams, EMPTY_DRAFT, filterInput, paramsFromFilter } from "./audit-url";
import { ChainVerificationResult } from "./chain-verification";

const PAGE_SIZE = 25;

export function AuditLog() {
  const trpc = useTRPC();
  const router = useRouter();
  const pathname = usePathname();
  const params = useSearchParams();
  const query = params.toString();
  // The URL is the filter: the form edits a draft, Apply writes the URL, and the list follows it.
  const fromUrl = useMemo(() => {
    const draft = draftFromParams(new URLSearchParams(query));
    return { draft, parsed: ZAuditFilter.safeParse(filterInput(draft)) };
  }, [query]);
  const filter = fromUrl.parsed.success ? fromUrl.parsed.data : null;
  const [draft, setDraft] = useState<AuditDraft>(fromUrl.draft);
  const [errors, setErrors] = useState<FieldErrors>(
    fromUrl.parsed.success ? {} : fieldErrorsFromZod(fromUrl.parsed.error),
  );
  // Cursors of the pages before this one, so "Newer" can go back.
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  // A new URL (Apply, Clear, back/forward, a pasted link): its filter in the form, from page 1.
  useEffect(() => {
    setDraft(fromUrl.draft);
    setErrors(fromUrl.parsed.success ? {} : fieldErrorsFromZod(fromUrl.parsed.error));
    setCursors([undefined]);
  }, [fromUrl]);
  const cursor = cursors.at(-1);
  // The server orders (and pages) the log: a new order starts again from page 1.
  const [order, setOrder] = useState<AuditOrder>("newest");
  const events = useQuery({
    ...trpc.audit.list.queryOptions({ filter: filter ?? {}, cursor, limit: PAGE_SIZE, order }),
    // A link with an invalid filter shows its errors, never the unfiltered log as if filtered.
    enabled: filter !== null,
    refetchInterval: 15_000,
  });
  const actions = useQuery(trpc.audit.actions.queryOptions());
  const plans = useQuery(trpc.plans.list.queryOptions({ includeArchived: true }));
  const verify = useMutation(trpc.audit.verify.mutationOptions());

  const exportQuery = filter ? paramsFromFilter(filter).toString() : "";

  function show(next: URLSearchParams) {
    const q = next.toString();
    router.push(q ? `${pathname}?${q}` : pathname, { scroll: false });
  }

  function apply(event: React.FormEvent) {
    event.preventDefault();
    const parsed = ZAuditFilter.safeParse(filterInput(draft));
    if (!parsed.success) {
      setErrors(fieldErrorsFromZod(parsed.error));
      return;
    }
    setErrors({});
    show(paramsFromFilter(parsed.data));
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
        {verify.data ? <ChainVerificationResult result={verify.data} /> : null}
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
                setDraft(EMPTY_DRAFT);
                setErrors({});
                show(new URLSearchParams());
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
        description={order === "newest" ? "Newest first." : "Oldest first."}
        actions={
          <>
            <span className="text-xs text-slate-500">Page {page}</span>
            <Button disabled={cursors.length <= 1} onClick={() => setCursors(cursors.slice(0, -1))}>
              {order === "newest" ? "← Newer" : "← Older"}
            </Button>
            <Button
              disabled={!events.data?.nextCursor}
              onClick={() => events.data?.nextCursor && setCursors([...cursors, events.data.nextCursor])}
            >
              {order === "newest" ? "Older →" : "Newer →"}
            </Button>
          </>
        }
      >
        <QueryState isLoading={events.isLoading} error={events.error} what="audit events" />
        {events.data ? (
          <AuditTable
            events={events.data.events}
            order={order}
            onOrderChange={(next) => {
              setOrder(next);
              setCursors([undefined]);
            }}
          />
        ) : null}
        {filter?.planId ? (
          <p className="mt-2 text-xs text-slate-500">
            <Badge tone="info">Filtered</Badge> to one plan.
          </p>
        ) : null}
      </Card>
      <AuditDigests />
    </>
  );
}
