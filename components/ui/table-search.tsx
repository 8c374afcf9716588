"use client";

// The search box above a DataTable: its text is the table's filter (every row searched for it).
export function TableSearch({
  label,
  placeholder,
  value,
  onChange,
}: {
  /** accessible name, e.g. "Filter the users" */
  label: string;
  placeholder: string;
  value: string;
  onChange: (value: string) => void;
}) {
  return (
    <input
      type="search"
      aria-label={label}
      placeholder={placeholder}
      className="w-56 rounded border border-slate-300 px-2 py-1 text-xs"
      value={value}
      onChange={(e) => onChange(e.target.value)}
    />
  );
}
