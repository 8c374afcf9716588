"use client";

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import type { inferRouterOutputs } from "@trpc/server";
import { useTRPC } from "@/components/providers/trpc";
import { useRoleBlock } from "@/components/providers/user";
import { Alert } from "@/components/ui/alert";
import { Button } from "@/components/ui/button";
import { Card } from "@/components/ui/card";
import { type ColumnDef, DataTable } from "@/components/ui/data-table";
import { messageOf } from "@/components/ui/field-errors";
import { QueryState } from "@/components/ui/query-state";
import { Time } from "@/components/ui/time";
import type { AppRouter } from "@/server/trpc/root";

type Digest = inferRouterOutputs<AppRouter>["audit"]["digests"][number];

const columns = (keyId: string | undefined): ColumnDef<Digest>[] => [
  { id: "id", header: "Digest", accessorFn: (d) => Number(d.id), cell: ({ row }) => `#${row.original.id}` },
  {
    id: "at",
    header: "Signed",
    accessorFn: (d) => d.at,
    cell: ({ row }) => <Time value={row.original.at} compact />,
  },
  {
    id: "covers",
    header: "Covers events",
    accessorFn: (d) => Number(d.eventCount),
    cell: ({ row: { original: d } }) =>
      `up to #${d.lastSeq} (${Number(d.eventCount).toLocaleString()} events)`,
  },
  { id: "reason", header: "Why", accessorFn: (d) => d.reason, meta: { className: "text-xs" } },
  {
    id: "signature",
    header: `Signature (HMAC-SHA256, key ${keyId ?? "—"})`,
    accessorFn: (d) => d.signature,
    enableSorting: false,
    cell: ({ row: { original: d } }) => <span title={d.signature}>{d.signature.slice(0, 16)}…</span>,
    meta: { className: "font-mono text-xs" },
  },
];

/** The newest signed digests of the chain's head, a request for one now, and their export. */
export function AuditDigests() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const blocked = useRoleBlock("operator");
  const digests = useQuery({ ...trpc.audit.digests.queryOptions(), refetchInterval: 5_000 });
  const request = useMutation(
    trpc.audit.requestDigest.mutationOptions({
      onSuccess: () => queryClient.invalidateQueries({ queryKey: trpc.audit.digests.queryKey() }),
    }),
  );
  return (
    <Card
      className="mt-4"
      title="Signed digests"
      description="Every few minutes a worker signs the chain's head (last event, its hash, the count) with SHARDSHIFT_AUDIT_KEY, a key kept outside this database. Verification checks the chain against each one, so a rewritten and rehashed history is caught. Keep exported copies elsewhere."
      actions={
        <div className="flex gap-2">
          <a
            className="rounded-md border border-slate-300 bg-white px-3 py-1.5 text-sm font-medium hover:bg-slate-100"
            href="/api/audit/export?format=digests"
            download
          >
            Export digests
          </a>
          <Button disabledReason={blocked} busy={request.isPending} onClick={() => request.mutate()}>
            Sign a digest now
          </Button>
        </div>
      }
    >
      <QueryState isLoading={digests.isLoading} error={digests.error} what="digests" />
      {request.data ? (
        <Alert tone="info" title="Requested: a worker signs it within seconds; it appears below." />
      ) : null}
      {request.error ? <Alert tone="error" title={messageOf(request.error)} /> : null}
      {digests.data ? (
        <DataTable
          data={digests.data.slice(0, 5)}
          columns={columns(digests.data[0]?.keyId)}
          label="Signed digests"
          initialSorting={[{ id: "id", desc: true }]}
          getRowId={(d) => String(d.id)}
          empty="No digest signed yet."
        />
      ) : null}
    </Card>
  );
}
