// Audit export as CSV or JSON, streamed page by page, or the signed digests (format=digests). Same
// filters and the same role rule (viewer or above) as the audit page.
import { sessionUser } from "@/server/auth/auth";
import { ZAuditFilter } from "@/server/schemas/audit";
import {
  configuredAuditKey,
  exportAuditDigests,
  signAuditDigest,
} from "@/server/services/audit/audit-digest";
import { auditCsvHeader, auditCsvRow, exportAuditEvents } from "@/server/services/audit/audit-query";

export const dynamic = "force-dynamic";

export async function GET(req: Request) {
  const user = await sessionUser(req.headers);
  if (!user) return Response.json({ error: "Sign in to export the audit log." }, { status: 401 });
  const params = new URL(req.url).searchParams;
  const format = params.get("format") ?? "csv";
  if (format !== "csv" && format !== "json" && format !== "digests") {
    return Response.json({ error: 'format must be "csv", "json" or "digests"' }, { status: 400 });
  }
  // Every export is anchored: the head it exports gets a signed digest (when a key is set), named
  // in a header, so the copy can later be checked against the digests exported with it.
  const digest = configuredAuditKey() ? await signAuditDigest("export") : null;
  const anchor: Record<string, string> = digest
    ? { "x-shardshift-audit-digest": `${digest.id}:${digest.lastSeq}:${digest.signature}` }
    : {};
  if (format === "digests") return exportDigests(anchor);
  const parsed = ZAuditFilter.safeParse({
    actorEmail: params.get("actorEmail") || undefined,
    action: params.get("action") || undefined,
    planId: params.get("planId") || undefined,
    from: params.get("from") || undefined,
    to: params.get("to") || undefined,
  });
  if (!parsed.success) {
    return Response.json({ error: "Invalid filter", issues: parsed.error.issues }, { status: 400 });
  }
  const encoder = new TextEncoder();
  const events = exportAuditEvents(parsed.data);
  const stream = new ReadableStream<Uint8Array>({
    async start(controller) {
      try {
        if (format === "csv") {
          controller.enqueue(encoder.encode(auditCsvHeader()));
          for await (const event of events) controller.enqueue(encoder.encode(auditCsvRow(event)));
        } else {
          controller.enqueue(encoder.encode("[\n"));
          let first = true;
          for await (const event of events) {
            controller.enqueue(encoder.encode(`${first ? "" : ",\n"}${JSON.stringify(event)}`));
            first = false;
          }
          controller.enqueue(encoder.encode("\n]\n"));
        }
        controller.close();
      } catch (error) {
        controller.error(error);
      }
    },
  });
  const stamp = new Date().toISOString().replaceAll(":", "-").slice(0, 19);
  return new Response(stream, {
    headers: {
      "content-type": format === "csv" ? "text/csv; charset=utf-8" : "application/json; charset=utf-8",
      "content-disposition": `attachment; filename="shardshift-audit-${stamp}.${format}"`,
      "cache-control": "no-store",
      ...anchor,
    },
  });
}

/** Every signed digest, oldest first, as JSON: keep a copy outside the control plane. */
function exportDigests(anchor: Record<string, string>): Response {
  const encoder = new TextEncoder();
  const stream = new ReadableStream<Uint8Array>({
    async start(controller) {
      try {
        controller.enqueue(encoder.encode("[\n"));
        let first = true;
        for await (const digest of exportAuditDigests()) {
          controller.enqueue(encoder.encode(`${first ? "" : ",\n"}${JSON.stringify(digest)}`));
          first = false;
        }
        controller.enqueue(encoder.encode("\n]\n"));
        controller.close();
      } catch (error) {
        controller.error(error);
      }
    },
  });
  const stamp = new Date().toISOString().replaceAll(":", "-").slice(0, 19);
  return new Response(stream, {
    headers: {
      "content-type": "application/json; charset=utf-8",
      "content-disposition": `attachment; filename="shardshift-audit-digests-${stamp}.json"`,
      "cache-control": "no-store",
      ...anchor,
    },
  });
}
