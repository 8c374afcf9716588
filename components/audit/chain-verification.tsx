"use client";

import type { inferRouterOutputs } from "@trpc/server";
import { Alert } from "@/components/ui/alert";
import type { AppRouter } from "@/server/trpc/root";

type AuditVerification = inferRouterOutputs<AppRouter>["audit"]["verify"];

/**
 * What "Verify chain" found: the hash chain (an edited event) and the signed digests (an edited
 * event whose successors were all rehashed). Both say from where on the history cannot be trusted.
 */
export function ChainVerificationResult({ result }: { result: AuditVerification }) {
  const { digests } = result;
  return (
    <div className="space-y-2">
      {result.brokenAt ? (
        <Alert
          tone="error"
          title={`Chain broken at event #${result.brokenAt.seq}: ${result.brokenAt.problem}.`}
        >
          {result.checked.toLocaleString()} events before it verified. Events from #{result.brokenAt.seq} on
          cannot be trusted; restore the audit table from a backup and investigate who had superuser access.
        </Alert>
      ) : (
        <Alert
          tone={digests.status === "diverged" ? "warn" : "ok"}
          title={`Chain verified: all ${result.checked.toLocaleString()} events match their hashes.`}
        >
          <span className="font-mono text-xs">head {result.headHash}</span>
        </Alert>
      )}
      {digests.status === "diverged" ? (
        <Alert
          tone="error"
          title={`History rewritten: it no longer matches signed digest #${digests.divergedAt?.digestId} (events #${digests.divergedAt?.fromSeq}–#${digests.divergedAt?.lastSeq}).`}
        >
          {digests.message} The hash chain alone cannot show this: whoever changed it also rehashed the later
          events.
        </Alert>
      ) : digests.status === "verified" ? (
        <Alert tone="ok" title="Signed digests match.">
          {digests.message}
        </Alert>
      ) : (
        <Alert
          tone="warn"
          title={digests.status === "no-key" ? "Not anchored by signed digests." : "No signed digest yet."}
        >
          {digests.message}
        </Alert>
      )}
    </div>
  );
}
