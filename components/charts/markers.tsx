"use client";

// Marks on a time chart for what happened (pause, resume, rate changes; later cutovers and trips).
// One generic list (from the audit log, see server/services/plans/markers.ts) drawn the same way on
// every chart, so charts stacked above each other mark the same moments.
import { ReferenceLine } from "recharts";
import { formatClock } from "@/components/ui/time";

export interface ChartMarker {
  t: number;
  kind: string;
  label: string;
  detail: string;
}

const COLOR: Record<string, string> = {
  "movement.pause": "#b45309",
  "movement.resume": "#15803d",
  "movement.cancel": "#be123c",
  "movement.start": "#0369a1",
};

/**
 * Reference lines for the markers inside the domain (Recharts wants them as direct children).
 * Markers closer than 12% of the span (about a label's width) share one line and one label ("Rate 100,000 rows/s · Resumed"),
 * so labels of moments a second apart do not print over each other.
 */
export function markerLines(markers: ChartMarker[] | undefined, domain: [number, number], showLabels = true) {
  const near = (domain[1] - domain[0]) * 0.12;
  const groups: ChartMarker[][] = [];
  for (const m of [...(markers ?? [])].sort((a, b) => a.t - b.t)) {
    if (m.t < domain[0] || m.t > domain[1]) continue;
    const last = groups.at(-1);
    const first = last?.[0];
    if (last && first && m.t - first.t <= near) last.push(m);
    else groups.push([m]);
  }
  return groups.map((group) => {
    const m = group[0] as ChartMarker;
    const color = COLOR[m.kind] ?? "#7e22ce";
    return (
      <ReferenceLine
        key={`${m.kind}-${m.t}`}
        x={m.t}
        stroke={color}
        strokeDasharray="4 3"
        ifOverflow="discard"
        label={
          showLabels
            ? {
                value: group.map((g) => g.label).join(" · "),
                position: "insideTopLeft",
                fontSize: 10,
                fill: color,
              }
            : undefined
        }
      />
    );
  });
}

/** The markers in words under a chart: readable without the lines, and for screen readers. */
export function MarkerList({
  markers,
  domain,
}: {
  markers: ChartMarker[] | undefined;
  domain: [number, number];
}) {
  const shown = (markers ?? []).filter((m) => m.t >= domain[0] && m.t <= domain[1]);
  if (shown.length === 0) return null;
  return (
    <ul
      className="mt-1 flex flex-wrap gap-x-3 gap-y-0.5 text-[0.7rem] text-slate-600"
      aria-label="Marked events"
    >
      {shown.map((m) => (
        <li key={`${m.kind}-${m.t}`} title={m.detail} data-testid="chart-marker">
          <span aria-hidden style={{ color: COLOR[m.kind] ?? "#7e22ce" }}>
            ┆{" "}
          </span>
          {formatClock(m.t)} {m.label}
        </li>
      ))}
    </ul>
  );
}
