// Marks on a plan's charts for what people and the engine did: start, pause, resume, rate changes,
// cancel — and, as cutovers and the breaker land, their steps and trips. One generic list read from
// the audit log (every state change is there, invariant 5), so a new kind of event needs one line
// in MARKED_ACTIONS, not a new chart.
import { db } from "../../db";

export interface ChartMarker {
  /** ms since the epoch */
  t: number;
  /** the audit action, e.g. "movement.pause" */
  kind: string;
  /** short, for the chart: "Paused", "Rate 20,000 rows/s" */
  label: string;
  /** who did it and why, for the tooltip */
  detail: string;
}

const nf = new Intl.NumberFormat("en-US");

/** Audit actions that mark the charts, and how each is labelled. */
const MARKED_ACTIONS: Record<string, (after: Record<string, unknown>) => string> = {
  "movement.start": () => "Started",
  "movement.pause": () => "Paused",
  "movement.resume": () => "Resumed",
  "movement.cancel": () => "Cancelled",
  "movement.rate": (after) =>
    typeof after.backfillRowsPerSecond === "number"
      ? `Rate ${nf.format(after.backfillRowsPerSecond)} rows/s`
      : "Rate",
  // One mark per cutover, when it was asked for (its steps take a second or so: one line).
  "routing.cutover.request": (after) =>
    typeof after.tenant === "string" && typeof after.to === "string"
      ? `Cutover ${after.tenant} → ${after.to}`
      : "Cutover",
};
/** Families whose every action marks the charts once they exist (labelled by the action). */
const MARKED_PREFIXES = ["cutover.", "breaker.", "rollback."];

export function markerLabel(action: string, after: unknown): string | null {
  const label = MARKED_ACTIONS[action];
  if (label) return label((after ?? {}) as Record<string, unknown>);
  return MARKED_PREFIXES.some((p) => action.startsWith(p)) ? action : null;
}

export async function chartMarkers(
  planId: string,
  minutes: number,
  now = new Date(),
): Promise<ChartMarker[]> {
  const events = await db().auditEvent.findMany({
    where: {
      planId,
      at: { gte: new Date(now.getTime() - minutes * 60_000) },
      OR: [
        { action: { in: Object.keys(MARKED_ACTIONS) } },
        ...MARKED_PREFIXES.map((p) => ({ action: { startsWith: p } })),
      ],
    },
    orderBy: { seq: "asc" },
    take: 200,
    select: { at: true, action: true, after: true, actorEmail: true, reason: true },
  });
  return events.flatMap((e) => {
    const label = markerLabel(e.action, e.after);
    if (!label) return [];
    return [
      {
        t: e.at.getTime(),
        kind: e.action,
        label,
        detail: `${label} by ${e.actorEmail}${e.reason ? `: ${e.reason}` : ""}`,
      },
    ];
  });
}
