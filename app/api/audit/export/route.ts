// Audit export as CSV or JSON, streamed page by page. Same filters and the same role rule
// (viewer or above) as the audit page.
import { sessionUser } from "@/server/auth/auth";
import { ZAuditFilter } from "@/server/schemas/audit";
import { auditCsvHeader, auditCsvRow, exportAuditEvents } from "@/server/services/audit/audit-query";

export const dynamic = "force-dynamic";

export async function GET(req: Request) {
  const user = await sessionUser(req.headers);
  if (!user) return Response.json({ error: "Sign in to export the audit log." }, { status: 401 });
  const params = new URL(req.url).searchParams;
  const format = params.get("format") ?? "csv";
  if (format !== "csv" && format !== "json") {
    return Response.json({ error: 'format must be "csv" or "json"' }, { status: 400 });
  }
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
    },
  });
}
