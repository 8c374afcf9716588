"use client";

import { CartesianGrid, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { formatClock } from "@/components/ui/time";
import { needsSeconds, timeTicks } from "./chart-window";
import { type ChartMarker, MarkerList, markerLines } from "./markers";

export interface SeriesPoint {
  t: number;
  value: number;
}

/** One line over time, with its unit on the value axis and in the tooltip, and event markers. */
export function TimeSeriesChart({
  points,
  unit,
  label,
  domain,
  markers,
  color = "#0369a1",
  empty,
}: {
  points: SeriesPoint[];
  unit: string;
  label: string;
  /** the time axis, e.g. from fitWindow(); the data's own span when omitted */
  domain?: [number, number];
  markers?: ChartMarker[];
  color?: string;
  empty: string;
}) {
  if (points.length === 0) {
    return <p className="grid h-48 place-items-center text-xs text-slate-500">{empty}</p>;
  }
  const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const span: [number, number] = domain ?? [points[0]?.t ?? 0, points.at(-1)?.t ?? 0];
  const seconds = needsSeconds(span);
  return (
    <figure aria-label={label}>
      <div className="h-48">
        <ResponsiveContainer width="100%" height="100%">
          <LineChart data={points} margin={{ top: 14, right: 12, bottom: 0, left: 8 }}>
            <CartesianGrid stroke="#e2e8f0" strokeDasharray="3 3" />
            <XAxis
              dataKey="t"
              type="number"
              scale="time"
              domain={span}
              allowDataOverflow
              ticks={timeTicks(span, 4)}
              tickFormatter={(t: number) => formatClock(t, seconds)}
              tick={{ fontSize: 11, fill: "#475569" }}
            />
            <YAxis
              tick={{ fontSize: 11, fill: "#475569" }}
              tickFormatter={(v: number) => nf.format(v)}
              width={64}
              label={{ value: unit, angle: -90, position: "insideLeft", fontSize: 11, fill: "#475569" }}
            />
            <Tooltip
              labelFormatter={(t) => formatClock(Number(t))}
              formatter={(v) => [`${nf.format(Number(v))} ${unit}`, label]}
            />
            {markerLines(markers, span)}
            <Line
              type="linear"
              dataKey="value"
              stroke={color}
              strokeWidth={2}
              dot={false}
              isAnimationActive={false}
            />
          </LineChart>
        </ResponsiveContainer>
      </div>
      <MarkerList markers={markers} domain={span} />
    </figure>
  );
}
