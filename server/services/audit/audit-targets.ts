// Names for the targets of audit events: people read "plan “EU split”", not a UUID (the id stays
// on hover). Names are looked up now, in one query per kind of target; a target removed since keeps
// the name its event recorded (its before/after), or shows its id.
import { db } from "../../db";
import type { TAuditListInput } from "../../schemas/audit";
import { type AuditEventView, listAuditEvents } from "./audit-query";

function recordedName(event: AuditEventView): string | null {
  for (const side of [event.after, event.before]) {
    const name = (side as { name?: unknown } | null)?.name;
    if (typeof name === "string" && name) return name;
  }
  return null;
}

export async function withTargetNames<E extends AuditEventView>(
  events: E[],
): Promise<(E & { targetName: string | null })[]> {
  const idsOf = (type: string) => [
    ...new Set(events.filter((e) => e.targetType === type && e.targetId).map((e) => e.targetId as string)),
  ];
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const [plans, databases, users] = await Promise.all([
    db().plan.findMany({
      where: { id: { in: idsOf("plan").filter((id) => uuid.test(id)) } },
      select: { id: true, name: true },
    }),
    db().database.findMany({
      where: { id: { in: idsOf("database").filter((id) => uuid.test(id)) } },
      select: { id: true, name: true },
    }),
    db().user.findMany({ where: { id: { in: idsOf("user") } }, select: { id: true, email: true } }),
  ]);
  const names = new Map<string, string>([
    ...plans.map((p) => [`plan:${p.id}`, p.name] as const),
    ...databases.map((d) => [`database:${d.id}`, d.name] as const),
    ...users.map((u) => [`user:${u.id}`, u.email] as const),
  ]);
  return events.map((e) => ({
    ...e,
    targetName: e.targetId ? (names.get(`${e.targetType}:${e.targetId}`) ?? recordedName(e)) : null,
  }));
}

/** A page of the audit log with its targets named. */
export async function listNamedAuditEvents(input: TAuditListInput) {
  const page = await listAuditEvents(input);
  return { ...page, events: await withTargetNames(page.events) };
}
