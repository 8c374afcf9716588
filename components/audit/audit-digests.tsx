"use client";

import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useTRPC } from "@/components/providers/trpc";
import { useRoleBlock } from "@/components/providers/user";
import { Alert } from "@/components/ui/alert";
import { Button } from "@/components/ui/button";
import { Card } from "@/components/ui/card";
import { messageOf } from "@/components/ui/field-errors";
import { QueryState } from "@/components/ui/query-state";
import { Time } from "@/components/ui/time";

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
      {digests.data?.length === 0 ? (
        <p className="py-4 text-center text-sm text-slate-600">No digest signed yet.</p>
      ) : null}
      {digests.data?.length ? (
        <table className="w-full text-left text-sm">
          <thead className="text-xs text-slate-500">
            <tr>
              <th className="py-1.5 font-medium">Digest</th>
              <th className="py-1.5 font-medium">Signed</th>
              <th className="py-1.5 font-medium">Covers events</th>
              <th className="py-1.5 font-medium">Why</th>
              <th className="py-1.5 font-medium">Signature (HMAC-SHA256, key {digests.data[0]?.keyId})</th>
            </tr>
          </thead>
          <tbody className="divide-y divide-slate-100">
            {digests.data.slice(0, 5).map((d) => (
              <tr key={d.id}>
                <td className="py-1.5">#{d.id}</td>
                <td className="py-1.5">
                  <Time value={d.at} compact />
                </td>
                <td className="py-1.5">
                  up to #{d.lastSeq} ({Number(d.eventCount).toLocaleString()} events)
                </td>
                <td className="py-1.5 text-xs">{d.reason}</td>
                <td className="py-1.5 font-mono text-xs" title={d.signature}>
                  {d.signature.slice(0, 16)}…
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </Card>
  );
}
