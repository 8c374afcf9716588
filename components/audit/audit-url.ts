// The audit log's filter lives in the URL (?actorEmail=…&action=…&planId=…&from=…&to=…), so a
// filtered view survives a reload and can be shared. Times travel as ISO instants (UTC), so the
// link means the same moment in every viewer's zone; the form shows them in the viewer's zone.
import type { TAuditFilter } from "@/server/schemas/audit";

export interface AuditDraft {
  actorEmail: string;
  action: string;
  planId: string;
  /** datetime-local value, in the viewer's zone */
  from: string;
  to: string;
}

export const EMPTY_DRAFT: AuditDraft = { actorEmail: "", action: "", planId: "", from: "", to: "" };

/** An ISO instant as a datetime-local value in the viewer's zone ("" when it is not a date). */
function toLocalInput(iso: string | null): string {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

/** The form's fields as the URL has them. */
export function draftFromParams(params: URLSearchParams): AuditDraft {
  return {
    actorEmail: params.get("actorEmail") ?? "",
    action: params.get("action") ?? "",
    planId: params.get("planId") ?? "",
    from: toLocalInput(params.get("from")),
    to: toLocalInput(params.get("to")),
  };
}

/** What ZAuditFilter parses: empty fields left out, local times read in the viewer's zone. */
export function filterInput(draft: AuditDraft): unknown {
  return {
    actorEmail: draft.actorEmail || undefined,
    action: draft.action || undefined,
    planId: draft.planId || undefined,
    from: draft.from ? new Date(draft.from) : undefined,
    to: draft.to ? new Date(draft.to) : undefined,
  };
}

/** The URL's query for a filter (also the export links' filter). */
export function paramsFromFilter(filter: TAuditFilter): URLSearchParams {
  const q = new URLSearchParams();
  if (filter.actorEmail) q.set("actorEmail", filter.actorEmail);
  if (filter.action) q.set("action", filter.action);
  if (filter.planId) q.set("planId", filter.planId);
  if (filter.from) q.set("from", filter.from.toISOString());
  if (filter.to) q.set("to", filter.to.toISOString());
  return q;
}
