"use client";

import { useSyncExternalStore } from "react";

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

// The one date format of the console: the viewer's zone and locale, written by these formatters
// only (pages, tables and chart axes alike), with a relative hint where a person reads a moment.
const FULL: Intl.DateTimeFormatOptions = {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
};
const COMPACT: Intl.DateTimeFormatOptions = {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
};
const CLOCK: Intl.DateTimeFormatOptions = { hour: "2-digit", minute: "2-digit", second: "2-digit" };
const CLOCK_MINUTES: Intl.DateTimeFormatOptions = { hour: "2-digit", minute: "2-digit" };

/** "Dec 1, 2026, 04:05:06 PM" in the viewer's zone (compact: no year, no seconds). */
export function formatDateTime(value: Date | string | number, compact = false): string {
  return new Date(value).toLocaleString(undefined, compact ? COMPACT : FULL);
}

/** A time of day in the viewer's zone, for chart axes and tooltips (seconds when the span is short). */
export function formatClock(value: Date | number, withSeconds = true): string {
  return new Date(value).toLocaleTimeString(undefined, withSeconds ? CLOCK : CLOCK_MINUTES);
}

// One clock for the whole page: every relative hint reads the same "now", so two rows of one table
// never disagree (each Time once kept the moment it mounted, so a row added later said "2 sec. ago"
// beside an older one saying "37 sec. ago" for the same second).
const TICK_MS = 5_000;
let clockNow = Date.now();
const listeners = new Set<() => void>();
let timer: ReturnType<typeof setInterval> | null = null;

function subscribeClock(listener: () => void) {
  listeners.add(listener);
  if (!timer) {
    clockNow = Date.now();
    timer = setInterval(() => {
      clockNow = Date.now();
      for (const l of listeners) l();
    }, TICK_MS);
  }
  return () => {
    listeners.delete(listener);
    if (listeners.size === 0 && timer) {
      clearInterval(timer);
      timer = null;
    }
  };
}

/** The page's shared clock, ticking every 5 s so relative hints stay true; null on the server (no hydration mismatch). */
export function useNow(): number | null {
  return useSyncExternalStore(
    subscribeClock,
    () => clockNow,
    () => null,
  );
}

/** A time in the viewer's zone with a relative hint ("3 min ago"); the exact UTC time on hover. */
export function Time({ value, compact = false }: { value: Date | string; compact?: boolean }) {
  const date = typeof value === "string" ? new Date(value) : value;
  const now = useNow();
  const local = formatDateTime(date, compact);
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
