// The worker's part of audit anchoring: a pg-boss cron schedule signs a digest of the audit chain's
// head every SHARDSHIFT_AUDIT_DIGEST_MINUTES (skipped when nothing was appended), and requests from
// the dashboard arrive on the same queue. pg-boss keeps one schedule per queue name however many
// workers register it, and the `short` policy keeps at most one digest job queued.
import type PgBoss from "pg-boss";
import { serverEnv } from "../env";
import {
  configuredAuditKey,
  type DigestReason,
  NO_AUDIT_KEY_MESSAGE,
  signAuditDigest,
} from "../services/audit/audit-digest";
import { QUEUES } from "./queue";

export interface AuditDigestJob {
  reason: Extract<DigestReason, "schedule" | "request">;
}

export function auditDigestCron(minutes = serverEnv().SHARDSHIFT_AUDIT_DIGEST_MINUTES): string {
  return `*/${minutes} * * * *`;
}

/** Works digest jobs and (re)registers the schedule. Without a key it does neither, and says so. */
export async function startAuditDigests(boss: PgBoss, log: (m: string) => void): Promise<boolean> {
  const key = configuredAuditKey();
  if (!key) {
    log(`Audit digests are off on this worker: ${NO_AUDIT_KEY_MESSAGE}`);
    return false;
  }
  await boss.work<AuditDigestJob>(QUEUES.auditDigest, { pollingIntervalSeconds: 1 }, async ([job]) => {
    if (job) await signAuditDigest(job.data?.reason === "request" ? "request" : "schedule", key);
  });
  await boss.schedule(QUEUES.auditDigest, auditDigestCron(), { reason: "schedule" }, { tz: "UTC" });
  return true;
}
