"use client";

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import type { inferRouterOutputs } from "@trpc/server";
import { useState } from "react";
import { fitWindow } from "@/components/charts/chart-window";
import { MarkerList } from "@/components/charts/markers";
import { MultiSeriesChart, type Series } from "@/components/charts/multi-series-chart";
import { WindowSelect } from "@/components/charts/window-select";
import { PlanHeader } from "@/components/plans/plan-header";
import { PlanQueryState } from "@/components/plans/plan-query-state";
import { usePlan } from "@/components/plans/use-plan";
import { useChartMarkers } from "@/components/plans/use-plan-figures";
import { useTRPC } from "@/components/providers/trpc";
import { useRoleBlock } from "@/components/providers/user";
import { Alert } from "@/components/ui/alert";
import { Badge } from "@/components/ui/badge";
import { Button } from "@/components/ui/button";
import { Card } from "@/components/ui/card";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { type ColumnDef, DataTable } from "@/components/ui/data-table";
import { messageOf } from "@/components/ui/field-errors";
import { QueryState } from "@/components/ui/query-state";
import { TableSearch } from "@/components/ui/table-search";
import { Time } from "@/components/ui/time";
import type { AppRouter } from "@/server/trpc/root";
import { TenantParity } from "./tenant-parity";

type Status = inferRouterOutputs<AppRouter>["parity"]["status"];
type Mismatch = Status["mismatches"][number];
const nf = new Intl.NumberFormat();
const plain = (table: string) => table.replaceAll('"', "");

type TableResult = NonNullable<Status["lastFull"]>["tables"][number];

const TABLE_COLUMNS: ColumnDef<TableResult>[] = [
  { id: "table", header: "Table", accessorFn: (t) => plain(t.table), meta: { className: "font-mono" } },
  {
    id: "verified",
    header: "Rows verified",
    accessorFn: (t) => t.rowsVerified,
    cell: ({ row }) => nf.format(row.original.rowsVerified),
    meta: { align: "right" },
  },
  {
    id: "rows",
    header: "Rows in table",
    accessorFn: (t) => t.rows ?? -1,
    cell: ({ row }) => (row.original.rows === undefined ? "—" : nf.format(row.original.rows)),
    meta: { align: "right" },
  },
  { id: "chunks", header: "Chunks", accessorFn: (t) => t.chunks, meta: { align: "right" } },
  {
    id: "mismatches",
    header: "Mismatched rows",
    accessorFn: (t) => t.mismatches,
    meta: { align: "right", className: "pr-6" },
  },
  {
    id: "result",
    header: "Result",
    accessorFn: (t) => (t.mismatches ? 2 : t.unverifiedTenants ? 1 : 0),
    cell: ({ row: { original: t } }) =>
      t.mismatches ? (
        <Badge tone="danger">Drift</Badge>
      ) : t.unverifiedTenants ? (
        <Badge tone="warn">{`${t.unverifiedTenants} tenant${t.unverifiedTenants === 1 ? "" : "s"} not verified`}</Badge>
      ) : (
        <Badge tone="ok">Clean</Badge>
      ),
  },
];

type UnverifiedRow = Status["unverified"][number];

const UNVERIFIED_COLUMNS: ColumnDef<UnverifiedRow>[] = [
  { id: "table", header: "Table", accessorFn: (u) => plain(u.table), meta: { className: "font-mono" } },
  { id: "tenant", header: "Tenant", accessorFn: (u) => u.tenant ?? "—", meta: { className: "font-mono" } },
  { id: "shard", header: "Shard", accessorFn: (u) => `shard ${u.shard}` },
  {
    id: "rows",
    header: "Rows not verified",
    accessorFn: (u) => u.rows,
    enableGlobalFilter: false,
    cell: ({ row }) => nf.format(row.original.rows),
    meta: { align: "right" },
  },
  { id: "why", header: "Why", accessorFn: (u) => u.reason, meta: { className: "pl-6" } },
];

/** "1,046,978 of 1,046,978 rows verified" (older checks did not count the rows in the tables). */
function verifiedOf(run: { rowsVerified: number; rowsTotal: number }): string {
  return run.rowsTotal > 0
    ? `${nf.format(run.rowsVerified)} of ${nf.format(run.rowsTotal)} rows verified`
    : `${nf.format(run.rowsVerified)} rows verified`;
}

function seriesOf(samples: Status["samples"], prefix: string): Series[] {
  const byName = new Map<string, Series>();
  for (const s of samples) {
    if (!s.name.startsWith(prefix)) continue;
    const name = plain(s.name.slice(prefix.length)) || prefix;
    const series = byName.get(name) ?? { name, points: [] };
    series.points.push({ t: new Date(s.at).getTime(), value: s.value });
    byName.set(name, series);
  }
  return [...byName.values()];
}

export function ParityPage({ planId }: { planId: string }) {
  const trpc = useTRPC();
  const plan = usePlan(planId);
  const [minutes, setMinutes] = useState(60);
  const status = useQuery({
    ...trpc.parity.status.queryOptions({ planId, minutes }),
    refetchInterval: 3_000,
  });
  const markers = useChartMarkers(planId, minutes).data;
  if (!plan.data) return <PlanQueryState planId={planId} isLoading={plan.isLoading} error={plan.error} />;
  const s = status.data;
  const drift = s
    ? seriesOf(s.samples, "parity.mismatches:").filter(
        (x) => x.points.some((p) => p.value > 0) || x.name.endsWith("events"),
      )
    : [];
  const verified = s
    ? seriesOf(s.samples, "parity.rows_per_s").map((x) => ({ ...x, name: "rows verified/s" }))
    : [];
  const lag = s ? seriesOf(s.samples, "cdc.lag_ms").map((x) => ({ ...x, name: "CDC lag (ms)" })) : [];
  // The window fits the data: a fresh plan's first minutes fill the axis, not its right edge.
  const times = [...drift, ...verified, ...lag].flatMap((x) => x.points.map((p) => p.t));
  const domain = fitWindow(
    [...times, ...(markers ?? []).map((m) => m.t)],
    minutes,
    Math.max(Date.now(), ...times.slice(-1)),
  );

  return (
    <>
      <PlanHeader plan={plan.data} />
      <div className="space-y-4">
        <QueryState isLoading={status.isLoading} error={status.error} what="parity" />
        {s ? <Overview planId={planId} status={s} /> : null}
        {s ? (
          <Card
            title="Drift, verification rate and CDC lag"
            description="Open mismatched rows per table, rows verified per second by full checks, and forward CDC lag, on one time axis."
            actions={<WindowSelect id="parity-window" minutes={minutes} onChange={setMinutes} />}
          >
            <h3 className="text-xs font-medium text-slate-700">Drift: open mismatched rows by table</h3>
            <MultiSeriesChart
              series={drift}
              domain={domain}
              unit="rows"
              markers={markers}
              label="Drift by table"
              empty="No parity checks in this window yet."
            />
            <h3 className="mt-3 text-xs font-medium text-slate-700">
              Rows verified per second (full checks)
            </h3>
            <MultiSeriesChart
              series={verified}
              domain={domain}
              unit="rows/s"
              markers={markers}
              markerLabels={false}
              label="Rows verified per second"
              height={120}
              empty="No full check finished in this window."
            />
            <h3 className="mt-3 text-xs font-medium text-slate-700">CDC lag (ms)</h3>
            <MultiSeriesChart
              series={lag}
              domain={domain}
              unit="ms"
              markers={markers}
              markerLabels={false}
              label="CDC lag"
              height={120}
              empty="No CDC measurements in this window."
            />
            <MarkerList markers={markers} domain={domain} />
          </Card>
        ) : null}
        {s?.mismatches.length ? (
          <Mismatches planId={planId} mismatches={s.mismatches} tenants={s.tenantsWithDrift} />
        ) : null}
        {s ? <TenantParity planId={planId} /> : null}
        {s?.unverified.length ? <Unverified unverified={s.unverified} /> : null}
        {s?.lastFull ? (
          <Card
            title="Last full check per table"
            description={
              s.lastFull.finishedAt ? (
                <>
                  Finished <Time value={s.lastFull.finishedAt} />.
                </>
              ) : undefined
            }
          >
            <DataTable
              data={s.lastFull.tables}
              columns={TABLE_COLUMNS}
              label="Last full check per table"
              dense
              getRowId={(t) => t.table}
              rowTestId="parity-table"
              empty="The check covered no table."
            />
          </Card>
        ) : null}
        {s ? (
          <Card title="Recent checks">
            {s.runs.length === 0 ? (
              <p className="text-xs text-slate-500">
                No checks yet. Checks run by themselves once the backfill has finished, or start one above.
              </p>
            ) : (
              <ul className="space-y-1 text-xs">
                {s.runs.map((r) => (
                  <li key={r.id} className="flex flex-wrap gap-2">
                    <Badge
                      tone={
                        r.status === "failed"
                          ? "danger"
                          : r.status === "running"
                            ? "info"
                            : r.mismatchesConfirmed || r.unverifiedTenants
                              ? "warn"
                              : "ok"
                      }
                    >
                      {r.status === "complete"
                        ? r.mismatchesConfirmed
                          ? `${r.mismatchesConfirmed} confirmed`
                          : r.unverifiedTenants
                            ? "incomplete"
                            : "clean"
                        : r.status}
                    </Badge>
                    <span className="font-medium">
                      {r.kind === "full" ? "Full check" : "Recently changed tenants"}
                    </span>
                    <span className="text-slate-500">
                      <Time value={r.startedAt} />
                    </span>
                    <span>
                      {r.kind === "full"
                        ? `${verifiedOf(r)} in ${r.chunksChecked} chunks, ${r.chunksMismatched} differed before the re-check`
                        : `${nf.format(r.chunksChecked)} recently changed (table, tenant) pairs checked (${verifiedOf(r)}), ${r.chunksMismatched} differed before the re-check`}
                      {r.unverifiedTenants
                        ? ` · ${r.unverifiedTenants} tenant${r.unverifiedTenants === 1 ? "" : "s"} not verified`
                        : null}
                    </span>
                    {r.error ? <span className="text-red-700">{r.error}</span> : null}
                  </li>
                ))}
              </ul>
            )}
          </Card>
        ) : null}
      </div>
    </>
  );
}

function Overview({ planId, status }: { planId: string; status: Status }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const roleBlock = useRoleBlock("operator");
  const check = useMutation(
    trpc.parity.check.mutationOptions({ onSuccess: () => queryClient.invalidateQueries() }),
  );
  const word =
    status.state === "clean"
      ? "Clean"
      : status.state === "drift"
        ? `Drift: ${status.openMismatches} row${status.openMismatches === 1 ? "" : "s"}`
        : status.state === "unverified"
          ? "Not every row verified"
          : "Not checked yet";
  return (
    <Card
      title="Parity"
      description="Legacy and the shards are compared with in-database chunk hashes (no rows leave the servers for matching chunks); a difference counts only if it is still there after CDC has caught up past it."
      actions={
        <Badge
          tone={
            status.state === "clean"
              ? "ok"
              : status.state === "drift"
                ? "danger"
                : status.state === "unverified"
                  ? "warn"
                  : "neutral"
          }
        >
          {word}
        </Badge>
      }
    >
      <div className="flex flex-wrap items-end gap-3">
        <div className="text-xs text-slate-600">
          {status.lastFullCheckAt ? (
            <>
              Last full check <Time value={status.lastFullCheckAt} />
              {status.lastFull ? ` · ${verifiedOf(status.lastFull)}` : null}
            </>
          ) : (
            "No full check has finished yet."
          )}
          {status.checking ? (
            <span className="ml-2 font-medium text-sky-800">A check is running…</span>
          ) : null}
        </div>
        <div className="ml-auto flex gap-2">
          <Button
            variant="primary"
            disabledReason={roleBlock}
            busy={check.isPending}
            onClick={() => check.mutate({ planId, kind: "full" })}
          >
            Run full check now
          </Button>
          <Button disabledReason={roleBlock} onClick={() => check.mutate({ planId, kind: "recent" })}>
            Check recently changed tenants
          </Button>
        </div>
      </div>
      {check.error ? (
        <div className="mt-3">
          <Alert tone="error" title={messageOf(check.error)} />
        </div>
      ) : null}
      {check.isSuccess ? (
        <div className="mt-3">
          <Alert tone="info" title="Check queued: a worker picks it up within seconds." />
        </div>
      ) : null}
    </Card>
  );
}

function Mismatches({
  planId,
  mismatches,
  tenants,
}: {
  planId: string;
  mismatches: Mismatch[];
  tenants: Status["tenantsWithDrift"];
}) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const roleBlock = useRoleBlock("operator");
  const repair = useMutation(
    trpc.parity.repair.mutationOptions({ onSuccess: () => queryClient.invalidateQueries() }),
  );
  const [open, setOpen] = useState<string | null>(mismatches[0]?.id ?? null);
  const [filter, setFilter] = useState("");
  const tables = [...new Set(mismatches.map((m) => m.table))];
  const error = repair.error ? messageOf(repair.error) : null;
  const columns: ColumnDef<Mismatch>[] = [
    {
      id: "table",
      header: "Table",
      accessorFn: (m) => plain(m.table),
      meta: { className: "font-mono" },
    },
    { id: "shard", header: "Shard", accessorFn: (m) => `shard ${m.shard}` },
    { id: "tenant", header: "Tenant", accessorFn: (m) => m.tenant ?? "—", meta: { className: "font-mono" } },
    { id: "key", header: "Key", accessorFn: (m) => m.key.join(", "), meta: { className: "font-mono" } },
    {
      id: "difference",
      header: "Difference",
      accessorFn: (m) =>
        m.kind === "changed"
          ? `changed: ${m.columns.join(", ")}`
          : m.kind === "missing"
            ? "missing on shard"
            : "extra on shard",
      cell: ({ row: { original: m }, getValue }) => (
        <Badge tone={m.kind === "changed" ? "warn" : "danger"}>{getValue<string>()}</Badge>
      ),
    },
    {
      id: "found",
      header: "Found",
      accessorFn: (m) => m.detectedAt,
      enableGlobalFilter: false,
      cell: ({ row }) => <Time value={row.original.detectedAt} />,
    },
    {
      id: "actions",
      header: () => <span className="sr-only">Actions</span>,
      enableSorting: false,
      cell: ({ row: { original: m } }) => (
        <div className="flex justify-end gap-2">
          <button
            type="button"
            className="text-sky-700 hover:underline"
            aria-expanded={open === m.id}
            onClick={() => setOpen(open === m.id ? null : m.id)}
          >
            {open === m.id ? "Hide values" : "Show values"}
          </button>
          {roleBlock ? (
            <Button disabledReason={roleBlock}>Repair</Button>
          ) : (
            <ConfirmDialog
              trigger={<Button>Repair</Button>}
              title="Repair one row"
              scope={`Make ${plain(m.table)} (${m.key.join(", ")}) on shard ${m.shard} equal legacy's row${m.kind === "extra" ? " (delete it: legacy has no such row)" : ""}.`}
              confirmLabel="Repair row"
              dismissLabel="Leave the row as it is"
              busy={repair.isPending}
              error={error}
              onConfirm={(reason) => repair.mutateAsync({ scope: "row", planId, mismatchId: m.id, reason })}
            />
          )}
        </div>
      ),
    },
  ];
  return (
    <Card
      title={`${mismatches.length} mismatched row${mismatches.length === 1 ? "" : "s"}`}
      description="Confirmed after the re-check. Repair copies the row from its owner (legacy) to the shard, or deletes what legacy does not have; every repair is audited."
      actions={tables.map((table) =>
        roleBlock ? null : (
          <ConfirmDialog
            key={table}
            trigger={<Button>Repair all in {plain(table)}</Button>}
            title="Repair a table's mismatches"
            scope={`Copy ${mismatches.filter((m) => m.table === table).length} row(s) of ${plain(table)} from legacy to their shard.`}
            confirmLabel={`Repair ${plain(table)}`}
            dismissLabel="Leave the rows as they are"
            busy={repair.isPending}
            error={error}
            onConfirm={(reason) => repair.mutateAsync({ scope: "table", planId, table, reason })}
          />
        ),
      )}
    >
      <div className="mb-2">
        <TableSearch
          label="Filter the mismatched rows"
          placeholder="Filter by table, tenant, key"
          value={filter}
          onChange={setFilter}
        />
      </div>
      <DataTable
        data={mismatches}
        columns={columns}
        label="Mismatched rows"
        dense
        filter={filter.trim()}
        getRowId={(m) => m.id}
        rowTestId="mismatch-row"
        empty="No mismatched row matches the filter."
        expanded={(m) => (open === m.id ? <RowValues mismatch={m} /> : null)}
      />
      {tenants.length ? (
        <div className="mt-3 flex flex-wrap items-center gap-2 text-xs">
          <span className="text-slate-600">Tenants with drift:</span>
          {tenants.map((t) =>
            roleBlock ? (
              <Badge key={t.tenant} tone="danger">{`tenant ${t.tenant}: ${t.rows} row(s)`}</Badge>
            ) : (
              <ConfirmDialog
                key={t.tenant}
                trigger={<Button variant="ghost">{`Repair tenant ${t.tenant} (${t.rows})`}</Button>}
                title="Repair a tenant"
                scope={`Compare every sharded table of tenant ${t.tenant} with legacy and copy every differing row from legacy to its shard.`}
                confirmLabel="Repair tenant"
                dismissLabel="Leave the tenant as it is"
                busy={repair.isPending}
                error={error}
                onConfirm={(reason) =>
                  repair.mutateAsync({ scope: "tenant", planId, tenant: t.tenant, reason })
                }
              />
            ),
          )}
        </div>
      ) : null}
    </Card>
  );
}

function RowValues({ mismatch }: { mismatch: Mismatch }) {
  const columns = Object.keys(mismatch.legacy ?? mismatch.shardValues ?? {});
  return (
    <table className="w-full text-left text-[0.7rem]" aria-label="Both sides of the row">
      <thead className="text-slate-500">
        <tr>
          <th className="py-0.5 font-medium">Column</th>
          <th className="py-0.5 font-medium">Legacy (owner)</th>
          <th className="py-0.5 font-medium">Shard {mismatch.shard}</th>
        </tr>
      </thead>
      <tbody>
        {columns.map((c) => {
          const differs = mismatch.columns.includes(c) || mismatch.kind !== "changed";
          return (
            <tr key={c} className={differs ? "bg-amber-50 font-medium" : ""}>
              <td className="py-0.5 pr-2 font-mono">
                {c}
                {differs && mismatch.kind === "changed" ? <span className="sr-only"> (differs)</span> : null}
              </td>
              <td className="max-w-96 truncate py-0.5 pr-2 font-mono" data-testid={`legacy-${c}`}>
                {mismatch.legacy ? (mismatch.legacy[c] ?? "NULL") : <em>no row</em>}
              </td>
              <td className="max-w-96 truncate py-0.5 font-mono" data-testid={`shard-${c}`}>
                {mismatch.shardValues ? (mismatch.shardValues[c] ?? "NULL") : <em>no row</em>}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

/** The tenants the last full check could not verify, and why: what stands between "no drift found" and "clean". */
function Unverified({ unverified }: { unverified: Status["unverified"] }) {
  const [filter, setFilter] = useState("");
  const rows = unverified.reduce((n, u) => n + u.rows, 0);
  return (
    <Card
      title={`${unverified.length} tenant${unverified.length === 1 ? "" : "s"} not verified by the last full check`}
      description={`${nf.format(rows)} row${rows === 1 ? "" : "s"} could not be compared before the check ended; the next checks try them again, and open mismatches there stay open until they are verified.`}
    >
      <div className="mb-2">
        <TableSearch
          label="Filter the tenants not verified"
          placeholder="Filter by table, tenant, why"
          value={filter}
          onChange={setFilter}
        />
      </div>
      <div data-testid="parity-unverified">
        <DataTable
          data={unverified}
          columns={UNVERIFIED_COLUMNS}
          label="Tenants not verified"
          dense
          filter={filter.trim()}
          maxRows={100}
          getRowId={(u) => `${u.table}|${u.tenant}|${u.shard}`}
          initialSorting={[{ id: "rows", desc: true }]}
          empty="No tenant matches the filter."
        />
      </div>
    </Card>
  );
}
