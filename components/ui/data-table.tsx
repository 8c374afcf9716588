"use client";

// The console's one table: sortable by any column a page allows, filterable by a search box, with
// status cells rendered by the page. Built on TanStack Table (headless: we keep our markup and
// styles), so the plans list, and later the tenants, cohorts and mismatch tables, sort and filter
// the same way instead of five hand-built <table>s doing it five ways.
import {
  type ColumnDef,
  flexRender,
  getCoreRowModel,
  getFilteredRowModel,
  getSortedRowModel,
  type RowData,
  type SortingState,
  useReactTable,
} from "@tanstack/react-table";
import { useState } from "react";

declare module "@tanstack/react-table" {
  interface ColumnMeta<TData extends RowData, TValue> {
    /** numbers are right-aligned */
    align?: "left" | "right";
    /** extra classes for the column's cells */
    className?: string;
  }
}

export type { ColumnDef, SortingState } from "@tanstack/react-table";

export function DataTable<T>({
  data,
  columns,
  label,
  initialSorting = [],
  filter = "",
  getRowId,
  rowTestId,
  empty,
}: {
  data: T[];
  // biome-ignore lint/suspicious/noExplicitAny: columns of different value types in one list (TanStack's own pattern)
  columns: ColumnDef<T, any>[];
  /** the table's accessible name */
  label: string;
  initialSorting?: SortingState;
  /** text every row is searched for (columns with enableGlobalFilter: false are skipped) */
  filter?: string;
  getRowId?: (row: T) => string;
  /** data-testid of each body row */
  rowTestId?: string;
  /** shown when no row is left */
  empty: React.ReactNode;
}) {
  const [sorting, setSorting] = useState<SortingState>(initialSorting);
  const table = useReactTable({
    data,
    columns,
    state: { sorting, globalFilter: filter },
    onSortingChange: setSorting,
    getRowId,
    getCoreRowModel: getCoreRowModel(),
    getSortedRowModel: getSortedRowModel(),
    getFilteredRowModel: getFilteredRowModel(),
    globalFilterFn: "includesString",
    // The first click sorts ascending for every column (TanStack starts numbers descending).
    sortDescFirst: false,
  });
  const rows = table.getRowModel().rows;
  return (
    <table className="w-full text-left text-sm" aria-label={label}>
      <thead className="text-xs text-slate-500">
        {table.getHeaderGroups().map((group) => (
          <tr key={group.id}>
            {group.headers.map((header) => {
              const sorted = header.column.getIsSorted();
              const right = header.column.columnDef.meta?.align === "right";
              const title = flexRender(header.column.columnDef.header, header.getContext());
              return (
                <th
                  key={header.id}
                  scope="col"
                  aria-sort={sorted === "asc" ? "ascending" : sorted === "desc" ? "descending" : undefined}
                  className={`py-1.5 pr-3 font-medium ${right ? "text-right" : ""}`}
                >
                  {header.isPlaceholder ? null : header.column.getCanSort() ? (
                    <button
                      type="button"
                      onClick={header.column.getToggleSortingHandler()}
                      className={`inline-flex items-center gap-1 hover:text-slate-900 ${sorted ? "text-slate-900" : ""}`}
                    >
                      {title}
                      <span aria-hidden className="text-[0.6rem]">
                        {sorted === "asc" ? "▲" : sorted === "desc" ? "▼" : "↕"}
                      </span>
                    </button>
                  ) : (
                    title
                  )}
                </th>
              );
            })}
          </tr>
        ))}
      </thead>
      <tbody className="divide-y divide-slate-100">
        {rows.length === 0 ? (
          <tr>
            <td colSpan={columns.length} className="py-8 text-center text-sm text-slate-600">
              {empty}
            </td>
          </tr>
        ) : (
          rows.map((row) => (
            <tr key={row.id} className="align-top hover:bg-slate-50" data-testid={rowTestId}>
              {row.getVisibleCells().map((cell) => {
                const meta = cell.column.columnDef.meta;
                return (
                  <td
                    key={cell.id}
                    className={`py-2 pr-3 ${meta?.align === "right" ? "text-right tabular-nums" : ""} ${meta?.className ?? ""}`}
                  >
                    {flexRender(cell.column.columnDef.cell, cell.getContext())}
                  </td>
                );
              })}
            </tr>
          ))
        )}
      </tbody>
    </table>
  );
}
