"use client";

// The plan's routing page: the map's version and counts, a tenant's owner, freeze and history (and
// the button that cuts it over or back), the plan's cutover attempts, the stray writes the in-database fences refused, and (admins) the API tokens routers read the
// map with.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import type { inferRouterOutputs } from "@trpc/server";
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
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { type ColumnDef, DataTable } from "@/components/ui/data-table";
import { Field, TextInput } from "@/components/ui/field";
import { messageOf } from "@/components/ui/field-errors";
import { QueryState } from "@/components/ui/query-state";
import { TenantKeyForm } from "@/components/ui/tenant-key-form";
import { Time } from "@/components/ui/time";
import type { AppRouter } from "@/server/trpc/root";
import { CutoverButton } from "./cutover-dialog";
import { CutoversTable } from "./cutovers-table";

const nf = new Intl.NumberFormat();
const STRAY_REASON: Record<string, string> = {
  frozen: "frozen there",
  not_owner: "not the owner",
  fence_changing: "fence changing",
  applied_after_flip: "written after the flip (dropped by CDC)",
  unknown: "tenant not told",
};

type Routing = inferRouterOutputs<AppRouter>["routing"];
type HistoryRow = Routing["tenant"]["history"][number];
type StrayRow = Routing["summary"]["strayWrites"]["recent"][number];
type Token = Routing["tokens"][number];

// The looked-up tenant's history, the recent stray writes and the tokens are short lists the
// server already bounded (one tenant's changes, the newest refusals): sorted in the browser.
const HISTORY_COLUMNS: ColumnDef<HistoryRow>[] = [
  {
    id: "version",
    header: "Version",
    accessorFn: (h) => Number(h.version),
    cell: ({ row }) => nf.format(row.original.version),
    meta: { className: "tabular-nums" },
  },
  { id: "at", header: "When", accessorFn: (h) => h.at, cell: ({ row }) => <Time value={row.original.at} /> },
  {
    id: "from",
    header: "From",
    accessorFn: (h) => h.from.owner,
    cell: ({ row }) => <RouteText route={row.original.from} />,
  },
  {
    id: "to",
    header: "To",
    accessorFn: (h) => h.to.owner,
    cell: ({ row }) => <RouteText route={row.original.to} />,
  },
  { id: "who", header: "Who", accessorFn: (h) => h.actorEmail },
  {
    id: "why",
    header: "Why",
    accessorFn: (h) => h.reason ?? "—",
    meta: { className: "text-slate-600" },
  },
];

const STRAY_COLUMNS: ColumnDef<StrayRow>[] = [
  { id: "at", header: "Seen", accessorFn: (w) => w.at, cell: ({ row }) => <Time value={row.original.at} /> },
  { id: "database", header: "Database", accessorFn: (w) => w.database },
  { id: "tenant", header: "Tenant", accessorFn: (w) => w.tenantKey ?? "—", meta: { className: "font-mono" } },
  { id: "reason", header: "Refused because", accessorFn: (w) => STRAY_REASON[w.reason] ?? w.reason },
  {
    id: "count",
    header: "Writes",
    accessorFn: (w) => w.count,
    cell: ({ row }) => nf.format(row.original.count),
    meta: { align: "right" },
  },
];

function OwnerBadge({ owner }: { owner: { name: string; kind: "legacy" | "shard" } }) {
  return <Badge tone={owner.kind === "legacy" ? "neutral" : "info"}>{owner.name}</Badge>;
}

function RouteText({ route }: { route: { owner: string; frozen: boolean } }) {
  return (
    <span>
      {route.owner}
      {route.frozen ? " (frozen)" : ""}
    </span>
  );
}

function TenantLookup({
  planId,
  tenant,
  onLookup,
}: {
  planId: string;
  tenant: string | null;
  onLookup: (tenant: string | null) => void;
}) {
  const trpc = useTRPC();
  const result = useQuery({
    ...trpc.routing.tenant.queryOptions({ planId, tenantKey: tenant ?? "" }),
    enabled: tenant !== null,
    refetchInterval: 3_000,
  });
  const t = result.data;
  return (
    <Card
      title="Find a tenant"
      description="Who owns it now (the only database that accepts its writes), whether its writes are frozen, and every change of its route. Operators cut it over to its shard, or back to legacy, from here."
    >
      <TenantKeyForm id="route-tenant-key" buttonLabel="Show route" onLookup={onLookup} />
      {result.error ? (
        <div className="mt-3">
          <Alert tone="error">{messageOf(result.error)}</Alert>
        </div>
      ) : null}
      {t ? (
        <div className="mt-3 space-y-3" data-testid="tenant-route">
          <dl className="grid grid-cols-4 gap-3 text-xs">
            <div>
              <dt className="text-slate-500">Tenant</dt>
              <dd className="font-mono text-sm">{t.tenantKey}</dd>
            </div>
            <div>
              <dt className="text-slate-500">Owner</dt>
              <dd data-testid="tenant-owner">
                <OwnerBadge owner={t.owner} />
              </dd>
            </div>
            <div>
              <dt className="text-slate-500">Writes</dt>
              <dd data-testid="tenant-frozen">
                {t.frozen ? (
                  <Badge tone="warn">
                    Frozen{t.frozenAt ? " since " : ""}
                    {t.frozenAt ? <Time value={t.frozenAt} /> : null}
                  </Badge>
                ) : (
                  <Badge tone="ok">Accepted</Badge>
                )}
              </dd>
            </div>
            <div>
              <dt className="text-slate-500">Map version</dt>
              <dd data-testid="tenant-map-version" className="tabular-nums">
                {nf.format(t.mapVersion)}
                <span className="text-slate-500">
                  {t.routeVersion === null
                    ? " · never changed: on legacy by default"
                    : ` · route changed at version ${nf.format(t.routeVersion)}`}
                </span>
              </dd>
            </div>
          </dl>
          <CutoverButton planId={planId} tenantKey={t.tenantKey} owner={t.owner} />
          {t.history.length === 0 ? (
            <p className="text-xs text-slate-600" data-testid="tenant-history-empty">
              No route changes yet: the tenant has always been on {t.owner.name}.
            </p>
          ) : (
            <DataTable
              data={t.history}
              columns={HISTORY_COLUMNS}
              label="Route history"
              dense
              initialSorting={[{ id: "version", desc: true }]}
              getRowId={(h) => String(h.version)}
              rowTestId="tenant-history-row"
              empty="No route changes."
            />
          )}
        </div>
      ) : null}
    </Card>
  );
}

function MapSummary({ planId }: { planId: string }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const summary = useQuery({ ...trpc.routing.summary.queryOptions({ planId }), refetchInterval: 3_000 });
  const blocked = useRoleBlock("operator");
  const install = useMutation(
    trpc.routing.installFences.mutationOptions({
      onSuccess: () => queryClient.invalidateQueries({ queryKey: trpc.routing.summary.queryKey({ planId }) }),
    }),
  );
  const s = summary.data;
  if (!s) return <QueryState isLoading={summary.isLoading} error={summary.error} what="the routing map" />;
  return (
    <Card
      title="Routing map"
      description="Tenant → owner plus a freeze flag, served to applications' routers over HTTP. Tenants not listed in the map are on legacy."
      actions={
        <ConfirmDialog
          trigger={
            <Button disabledReason={blocked}>
              {s.fenceInstalledAt ? "Reinstall fences" : "Install fences"}
            </Button>
          }
          title="Install the in-database fences"
          scope="Create the shardshift schema and a trigger on every sharded table, on legacy and on every shard of this plan. Each table is locked against writes for a moment (at most 2 s, or the install stops and changes nothing)."
          confirmLabel="Install fences"
          dismissLabel="Not now"
          busy={install.isPending}
          error={install.error ? messageOf(install.error) : null}
          onConfirm={(reason) => install.mutateAsync({ planId, reason })}
        />
      }
    >
      <dl className="grid grid-cols-4 gap-3 text-xs" data-testid="routing-summary">
        <div>
          <dt className="text-slate-500">Map version</dt>
          <dd className="text-sm tabular-nums" data-testid="map-version">
            {nf.format(s.mapVersion)}
          </dd>
          <dd className="text-slate-500">
            {s.updatedAt ? (
              <>
                changed <Time value={s.updatedAt} />
              </>
            ) : (
              "never changed"
            )}
          </dd>
        </div>
        <div>
          <dt className="text-slate-500">Tenants on shards</dt>
          <dd className="text-sm tabular-nums">{nf.format(s.tenantsOnShards)}</dd>
        </div>
        <div>
          <dt className="text-slate-500">Frozen now</dt>
          <dd className="text-sm tabular-nums">{nf.format(s.tenantsFrozen)}</dd>
        </div>
        <div>
          <dt className="text-slate-500">In-database fences</dt>
          <dd data-testid="fence-state">
            {s.fenceInstalledAt ? (
              <Badge tone="ok">
                Installed <Time value={s.fenceInstalledAt} />
              </Badge>
            ) : (
              <Badge tone="warn">Not installed</Badge>
            )}
          </dd>
        </div>
      </dl>
      {!s.fenceInstalledAt ? (
        <p className="mt-2 text-xs text-slate-600">
          Without fences only the router SDK keeps writes on each tenant&apos;s owner; an application that
          bypasses it could write a moved tenant on legacy. Install them before the first cutover.
        </p>
      ) : null}
    </Card>
  );
}

function StrayWrites({ planId }: { planId: string }) {
  const trpc = useTRPC();
  const summary = useQuery({ ...trpc.routing.summary.queryOptions({ planId }), refetchInterval: 3_000 });
  const stray = summary.data?.strayWrites;
  return (
    <Card
      title="Stray writes"
      description="Writes a database's fence refused: to a tenant frozen there, or owned by another database. Each was rolled back; the application got an error naming the owner."
    >
      {!stray ? null : stray.total === 0 ? (
        <p className="text-xs text-slate-600" data-testid="stray-none">
          None refused.
        </p>
      ) : (
        <>
          <p className="mb-2 text-xs text-slate-700" data-testid="stray-total">
            <Badge tone={stray.notOwner > 0 ? "danger" : "warn"}>{nf.format(stray.total)} refused</Badge>{" "}
            {nf.format(stray.notOwner)} to a database that is not the tenant&apos;s owner: an application
            writing around the router, or with a map older than a flip — find it from that database&apos;s
            connection log. Refusals while frozen also come from routers a few milliseconds behind a freeze;
            the router SDK retries those.
          </p>
          <DataTable
            data={stray.recent}
            columns={STRAY_COLUMNS}
            label="Stray writes"
            dense
            rowTestId="stray-row"
            empty="None refused."
          />
        </>
      )}
    </Card>
  );
}

function ApiTokens({ planId }: { planId: string }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const blocked = useRoleBlock("admin");
  const tokens = useQuery({ ...trpc.routing.tokens.queryOptions({ planId }), enabled: !blocked });
  const [name, setName] = useState("");
  const [shown, setShown] = useState<{ name: string; token: string } | null>(null);
  const refresh = () => queryClient.invalidateQueries({ queryKey: trpc.routing.tokens.queryKey({ planId }) });
  const create = useMutation(
    trpc.routing.createToken.mutationOptions({
      onSuccess: (created) => {
        setShown({ name: created.apiToken.name, token: created.token });
        setName("");
        void refresh();
      },
    }),
  );
  const revoke = useMutation(trpc.routing.revokeToken.mutationOptions({ onSuccess: () => void refresh() }));
  const tokenColumns: ColumnDef<Token>[] = [
    { id: "name", header: "Application", accessorFn: (t) => t.name },
    {
      id: "prefix",
      header: "Token",
      accessorFn: (t) => t.prefix,
      cell: ({ row }) => `${row.original.prefix}…`,
      meta: { className: "font-mono" },
    },
    {
      id: "created",
      header: "Created",
      accessorFn: (t) => t.createdAt,
      cell: ({ row: { original: t } }) => (
        <>
          <Time value={t.createdAt} /> by {t.createdByEmail}
        </>
      ),
    },
    {
      id: "used",
      header: "Last used",
      accessorFn: (t) => (t.lastUsedAt ? new Date(t.lastUsedAt).getTime() : 0),
      cell: ({ row: { original: t } }) => (t.lastUsedAt ? <Time value={t.lastUsedAt} /> : "never"),
    },
    {
      id: "state",
      header: "State",
      accessorFn: (t) => (t.revokedAt ? "Revoked" : "Active"),
      cell: ({ row: { original: t } }) =>
        t.revokedAt ? <Badge tone="neutral">Revoked</Badge> : <Badge tone="ok">Active</Badge>,
    },
    {
      id: "actions",
      header: () => <span className="sr-only">Actions</span>,
      enableSorting: false,
      meta: { align: "right" },
      cell: ({ row: { original: t } }) =>
        t.revokedAt ? null : (
          <ConfirmDialog
            trigger={<Button variant="danger">Revoke</Button>}
            title="Revoke an API token"
            scope={`Routers using “${t.name}” (${t.prefix}…) stop receiving this plan's routing map at their next request; they keep routing with the map they hold.`}
            confirmLabel={`Revoke ${t.name}`}
            dismissLabel="Keep the token"
            tone="danger"
            busy={revoke.isPending}
            error={revoke.error ? messageOf(revoke.error) : null}
            onConfirm={(reason) => revoke.mutateAsync({ tokenId: t.id, reason })}
          />
        ),
    },
  ];
  return (
    <Card
      title="API tokens"
      description="A router reads this plan's routing map with a token: GET /api/routing/map with Authorization: Bearer <token>. A token is shown once, stored hashed, and can be revoked."
    >
      {blocked ? (
        <p className="text-xs text-slate-600">{`Admins create and revoke tokens here. ${blocked}`}</p>
      ) : (
        <div className="space-y-3">
          <form
            className="flex items-end gap-2"
            onSubmit={(e) => {
              e.preventDefault();
              create.mutate({ planId, name });
            }}
          >
            <div className="w-72">
              <Field id="token-name" label="Application" hint="Name the token after what uses it.">
                <TextInput id="token-name" value={name} onChange={(e) => setName(e.target.value)} />
              </Field>
            </div>
            <Button type="submit" variant="primary" busy={create.isPending} disabled={name.trim().length < 2}>
              Create token
            </Button>
          </form>
          {create.error ? <Alert tone="error">{messageOf(create.error)}</Alert> : null}
          {shown ? (
            <Alert tone="info">
              <span>
                Token for {shown.name} — copy it now, it is not shown again:{" "}
                <code className="font-mono break-all" data-testid="new-token">
                  {shown.token}
                </code>
              </span>
            </Alert>
          ) : null}
          {revoke.error ? <Alert tone="error">{messageOf(revoke.error)}</Alert> : null}
          <DataTable
            data={tokens.data ?? []}
            columns={tokenColumns}
            label="API tokens"
            dense
            getRowId={(t) => t.id}
            rowTestId="token-row"
            empty="No token yet: create one for each application that routes."
          />
        </div>
      )}
    </Card>
  );
}

export function RoutingPage({ planId }: { planId: string }) {
  const plan = usePlan(planId);
  // The looked-up tenant also filters the cutovers table.
  const [tenant, setTenant] = useState<string | null>(null);
  if (!plan.data) return <PlanQueryState planId={planId} isLoading={plan.isLoading} error={plan.error} />;
  return (
    <>
      <PlanHeader plan={plan.data} />
      <div className="space-y-4">
        <MapSummary planId={planId} />
        <TenantLookup planId={planId} tenant={tenant} onLookup={setTenant} />
        <CutoversTable planId={planId} tenantKey={tenant} />
        {/* The header's and overview's stray-write badges link here. */}
        <div id="stray-writes" className="scroll-mt-4">
          <StrayWrites planId={planId} />
        </div>
        <ApiTokens planId={planId} />
      </div>
    </>
  );
}
