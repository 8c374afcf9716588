"use client";

// The plan's routing page: the map's version and counts, a tenant's owner, freeze and history (and
// the button that cuts it over or back), the plan's cutover attempts, the stray writes the in-database fences refused, and (admins) the API tokens routers read the
// map with.
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
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { Field, TextInput } from "@/components/ui/field";
import { messageOf } from "@/components/ui/field-errors";
import { QueryState } from "@/components/ui/query-state";
import { TenantKeyForm } from "@/components/ui/tenant-key-form";
import { Time } from "@/components/ui/time";
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
            <table className="w-full text-left text-xs" aria-label="Route history">
              <thead className="text-slate-500">
                <tr>
                  <th className="py-1 font-medium">Version</th>
                  <th className="py-1 font-medium">When</th>
                  <th className="py-1 font-medium">From</th>
                  <th className="py-1 font-medium">To</th>
                  <th className="py-1 font-medium">Who</th>
                  <th className="py-1 font-medium">Why</th>
                </tr>
              </thead>
              <tbody className="divide-y divide-slate-100">
                {t.history.map((h) => (
                  <tr key={h.version} data-testid="tenant-history-row">
                    <td className="py-1.5 tabular-nums">{nf.format(h.version)}</td>
                    <td className="py-1.5">
                      <Time value={h.at} />
                    </td>
                    <td className="py-1.5">
                      <RouteText route={h.from} />
                    </td>
                    <td className="py-1.5">
                      <RouteText route={h.to} />
                    </td>
                    <td className="py-1.5">{h.actorEmail}</td>
                    <td className="py-1.5 text-slate-600">{h.reason ?? "—"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
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
          <table className="w-full text-left text-xs" aria-label="Stray writes">
            <thead className="text-slate-500">
              <tr>
                <th className="py-1 font-medium">Seen</th>
                <th className="py-1 font-medium">Database</th>
                <th className="py-1 font-medium">Tenant</th>
                <th className="py-1 font-medium">Refused because</th>
                <th className="py-1 text-right font-medium">Writes</th>
              </tr>
            </thead>
            <tbody className="divide-y divide-slate-100">
              {stray.recent.map((w) => (
                <tr key={`${w.database}-${String(w.at)}-${w.tenantKey}-${w.count}`} data-testid="stray-row">
                  <td className="py-1.5">
                    <Time value={w.at} />
                  </td>
                  <td className="py-1.5">{w.database}</td>
                  <td className="py-1.5 font-mono">{w.tenantKey ?? "—"}</td>
                  <td className="py-1.5">{STRAY_REASON[w.reason] ?? w.reason}</td>
                  <td className="py-1.5 text-right tabular-nums">{nf.format(w.count)}</td>
                </tr>
              ))}
            </tbody>
          </table>
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
          <table className="w-full text-left text-xs" aria-label="API tokens">
            <thead className="text-slate-500">
              <tr>
                <th className="py-1 font-medium">Application</th>
                <th className="py-1 font-medium">Token</th>
                <th className="py-1 font-medium">Created</th>
                <th className="py-1 font-medium">Last used</th>
                <th className="py-1 font-medium">State</th>
                <th className="py-1" />
              </tr>
            </thead>
            <tbody className="divide-y divide-slate-100">
              {(tokens.data ?? []).map((t) => (
                <tr key={t.id} data-testid="token-row">
                  <td className="py-1.5">{t.name}</td>
                  <td className="py-1.5 font-mono">{t.prefix}…</td>
                  <td className="py-1.5">
                    <Time value={t.createdAt} /> by {t.createdByEmail}
                  </td>
                  <td className="py-1.5">{t.lastUsedAt ? <Time value={t.lastUsedAt} /> : "never"}</td>
                  <td className="py-1.5">
                    {t.revokedAt ? <Badge tone="neutral">Revoked</Badge> : <Badge tone="ok">Active</Badge>}
                  </td>
                  <td className="py-1.5 text-right">
                    {t.revokedAt ? null : (
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
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
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
