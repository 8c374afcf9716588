"use client";

import { CartesianGrid, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";

export interface SeriesPoint {
  t: number;
  value: number;
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

/** One line over time, with a unit on the axis and in the tooltip. */
export function TimeSeriesChart({
  points,
  unit,
  label,
  color = "#0369a1",
  empty,
}: {
  points: SeriesPoint[];
  unit: string;
  label: string;
  color?: string;
  empty: string;
}) {
  if (points.length === 0) {
    return <p className="grid h-48 place-items-center text-xs text-slate-500">{empty}</p>;
  }
  const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  return (
    <figure aria-label={label} className="h-48">
      <ResponsiveContainer width="100%" height="100%">
        <LineChart data={points} margin={{ top: 8, right: 12, bottom: 0, left: 8 }}>
          <CartesianGrid stroke="#e2e8f0" strokeDasharray="3 3" />
          <XAxis
            dataKey="t"
            type="number"
            scale="time"
            domain={["dataMin", "dataMax"]}
            tickFormatter={(t: number) => timeFormat.format(new Date(t))}
            tick={{ fontSize: 11, fill: "#475569" }}
          />
          <YAxis
            tick={{ fontSize: 11, fill: "#475569" }}
            tickFormatter={(v: number) => nf.format(v)}
            width={48}
          />
          <Tooltip
            labelFormatter={(t) => timeFormat.format(new Date(Number(t)))}
            formatter={(v) => [`${nf.format(Number(v))} ${unit}`, label]}
          />
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
    </figure>
  );
}
