"use client";

import { CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";

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
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

/** Several lines on one fixed time domain, so charts stacked above each other line up. */
export function MultiSeriesChart({
  series,
  domain,
  unit,
  label,
  height = 176,
  empty,
}: {
  series: Series[];
  domain: [number, number];
  unit: string;
  label: string;
  height?: number;
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
        <LineChart margin={{ top: 8, right: 12, bottom: 0, left: 8 }}>
          <CartesianGrid stroke="#e2e8f0" strokeDasharray="3 3" />
          <XAxis
            dataKey="t"
            type="number"
            scale="time"
            domain={domain}
            allowDuplicatedCategory={false}
            tickFormatter={(t: number) => timeFormat.format(new Date(t))}
            tick={{ fontSize: 11, fill: "#475569" }}
          />
          <YAxis
            tick={{ fontSize: 11, fill: "#475569" }}
            tickFormatter={(v: number) => nf.format(v)}
            width={48}
            allowDecimals={false}
          />
          <Tooltip
            labelFormatter={(t) => new Date(Number(t)).toLocaleTimeString()}
            formatter={(v, name) => [`${nf.format(Number(v))} ${unit}`, String(name)]}
          />
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
