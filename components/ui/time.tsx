"use client";

import { useEffect, useState } from "react";

const units: [Intl.RelativeTimeFormatUnit, number][] = [
  ["day", 86_400_000],
  ["hour", 3_600_000],
  ["minute", 60_000],
  ["second", 1_000],
];

export function relative(date: Date, now = Date.now()): string {
  // Data can be a little newer than the clock tick that rendered it: never say "in 2 sec.".
  const diff = Math.min(0, date.getTime() - now);
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" });
  for (const [unit, ms] of units) {
    if (Math.abs(diff) >= ms || unit === "second") return rtf.format(Math.round(diff / ms), unit);
  }
  return "";
}

/** A time in the viewer's zone with a relative hint ("3 min ago"); the exact UTC time on hover. */
export function Time({ value, compact = false }: { value: Date | string; compact?: boolean }) {
  const date = typeof value === "string" ? new Date(value) : value;
  const [now, setNow] = useState<number | null>(null);
  useEffect(() => {
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), 30_000);
    return () => clearInterval(timer);
  }, []);
  const local = date.toLocaleString(
    undefined,
    compact
      ? { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }
      : {
          year: "numeric",
          month: "short",
          day: "numeric",
          hour: "2-digit",
          minute: "2-digit",
          second: "2-digit",
        },
  );
  return (
    <time
      dateTime={date.toISOString()}
      title={date.toISOString()}
      className={compact ? "" : "whitespace-nowrap"}
    >
      {local}
      {now !== null ? (
        <span className={compact ? "block text-slate-500" : "ml-1 text-slate-500"}>
          ({relative(date, now)})
        </span>
      ) : null}
    </time>
  );
}
