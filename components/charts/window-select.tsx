"use client";

import { SelectInput } from "@/components/ui/field";

const WINDOWS = [
  { minutes: 5, label: "5 min" },
  { minutes: 15, label: "15 min" },
  { minutes: 60, label: "1 hour" },
  { minutes: 360, label: "6 hours" },
  { minutes: 1440, label: "24 hours" },
];

/** The time window of a page's charts. */
export function WindowSelect({
  id,
  minutes,
  onChange,
}: {
  id: string;
  minutes: number;
  onChange: (minutes: number) => void;
}) {
  return (
    <>
      <label htmlFor={id} className="text-xs text-slate-600">
        Window
      </label>
      <SelectInput
        id={id}
        value={minutes}
        onChange={(e) => onChange(Number(e.target.value))}
        className="w-28"
      >
        {WINDOWS.map((w) => (
          <option key={w.minutes} value={w.minutes}>
            {w.label}
          </option>
        ))}
      </SelectInput>
    </>
  );
}
