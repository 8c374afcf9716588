"use client";

import { CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { formatClock } from "@/components/ui/time";
import { needsSeconds, timeTicks } from "./chart-window";
import { type ChartMarker, markerLines } from "./markers";

export interface Series {
  name: string;
  points: { t: number; value: number }[];
}

const COLORS = [
  "#0369a1",
  "#b45309",
  "#15803d",
  "#7e22ce",
  "#be123c",
  "#0f766e",
  "#4d7c0f",
  "#a16207",
  "#334155",
];

/** Several lines on one fixed time domain, so charts stacked above each other line up. */
export function MultiSeriesChart({
  series,
  domain,
  unit,
  label,
  height = 176,
  markers,
  markerLabels = true,
  empty,
}: {
  series: Series[];
  domain: [number, number];
  unit: string;
  label: string;
  height?: number;
  markers?: ChartMarker[];
  /** label the marker lines (the top chart of a stack; the ones below repeat only the lines) */
  markerLabels?: boolean;
  empty: string;
}) {
  const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  if (series.every((s) => s.points.length === 0)) {
    return (
      <p className="grid place-items-center text-xs text-slate-500" style={{ height }}>
        {empty}
      </p>
    );
  }
  return (
    <figure aria-label={label} style={{ height }}>
      <ResponsiveContainer width="100%" height="100%">
        <LineChart margin={{ top: 14, right: 12, bottom: 0, left: 8 }}>
          <CartesianGrid stroke="#e2e8f0" strokeDasharray="3 3" />
          <XAxis
            dataKey="t"
            type="number"
            scale="time"
            domain={domain}
            allowDuplicatedCategory={false}
            allowDataOverflow
            ticks={timeTicks(domain)}
            tickFormatter={(t: number) => formatClock(t, needsSeconds(domain))}
            tick={{ fontSize: 11, fill: "#475569" }}
          />
          <YAxis
            tick={{ fontSize: 11, fill: "#475569" }}
            tickFormatter={(v: number) => nf.format(v)}
            width={64}
            allowDecimals={false}
            label={{ value: unit, angle: -90, position: "insideLeft", fontSize: 11, fill: "#475569" }}
          />
          <Tooltip
            labelFormatter={(t) => formatClock(Number(t))}
            formatter={(v, name) => [`${nf.format(Number(v))} ${unit}`, String(name)]}
          />
          {markerLines(markers, domain, markerLabels)}
          {series.length > 1 ? <Legend wrapperStyle={{ fontSize: 11 }} /> : null}
          {series.map((s, i) => (
            <Line
              key={s.name}
              data={s.points}
              dataKey="value"
              name={s.name}
              type="stepAfter"
              stroke={COLORS[i % COLORS.length]}
              strokeWidth={2}
              dot={s.points.length < 30}
              isAnimationActive={false}
            />
          ))}
        </LineChart>
      </ResponsiveContainer>
    </figure>
  );
}
