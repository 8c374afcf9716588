"use client";

// The console's one table: sortable by any column a page allows, filterable by a search box, with
// status cells rendered by the page. Built on TanStack Table (headless: we keep our markup and
// styles), so every page that lists rows — plans, tenants, cohorts, cutovers, audit events,
// mismatches, users, databases — sorts and filters the same way instead of each hand-building a
// <table> its own way.
//
// Two modes. By default the rows given are all the rows: the table sorts and filters them in the
// browser. With `manual`, the rows are one page the server chose (the audit log's millions of
// events, a tenant looked up among thousands): loading everything into the browser to sort it
// would not scale, so the table shows the rows in the order given and hands sorting changes to the
// page, which asks the server again (only columns the server can order by are sortable there).
import {
  type ColumnDef,
  getCoreRowModel,
  getFilteredRowModel,
  getSortedRowModel,
  type RowData,
  type SortingState,
  useReactTable,
} from "@tanstack/react-table";
import { Fragment, type ReactNode, useState } from "react";

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
  dense = false,
  manual,
  expanded,
  maxRows,
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
  /** smaller type and rows, for tables inside a card beside others */
  dense?: boolean;
  /**
   * The server sorts and filters (the rows are one page of its answer, in its order): the page
   * holds the sorting and asks again when it changes. `filter` is ignored; the page's search goes
   * to the server.
   */
  manual?: { sorting: SortingState; onSortingChange: (sorting: SortingState) => void };
  /** a detail shown under a row, across the whole table (null: none) */
  expanded?: (row: T) => React.ReactNode;
  /**
   * Render at most this many rows (after sorting and filtering), saying how many more there are:
   * thousands of tenants sort and filter in the browser in milliseconds, but rendering them all on
   * every refresh does not pay, and the search box narrows them.
   */
  maxRows?: number;
}) {
  const [localSorting, setLocalSorting] = useState<SortingState>(initialSorting);
  const sorting = manual ? manual.sorting : localSorting;
  const table = useReactTable({
    data,
    columns,
    state: { sorting, globalFilter: manual ? "" : filter },
    onSortingChange: (updater) => {
      const next = typeof updater === "function" ? updater(sorting) : updater;
      if (manual) manual.onSortingChange(next);
      else setLocalSorting(next);
    },
    getRowId,
    getCoreRowModel: getCoreRowModel(),
    getSortedRowModel: getSortedRowModel(),
    getFilteredRowModel: getFilteredRowModel(),
    manualSorting: Boolean(manual),
    manualFiltering: Boolean(manual),
    // A server always has an order: a third click flips it back instead of leaving it unsorted.
    enableSortingRemoval: !manual,
    globalFilterFn: "includesString",
    // The first click sorts ascending for every column (TanStack starts numbers descending).
    sortDescFirst: false,
  });
  const all = table.getRowModel().rows;
  const rows = maxRows === undefined ? all : all.slice(0, maxRows);
  const cellPad = dense ? "py-1.5 pr-3" : "py-2 pr-3";
  return (
    <table className={`w-full text-left ${dense ? "text-xs" : "text-sm"}`} aria-label={label}>
      <thead className="text-xs text-slate-500">
        {table.getHeaderGroups().map((group) => (
          <tr key={group.id}>
            {group.headers.map((header) => {
              const sorted = header.column.getIsSorted();
              const right = header.column.columnDef.meta?.align === "right";
              const title = renderTemplate(header.column.columnDef.header, header.getContext());
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
            <td
              colSpan={columns.length}
              className={`text-center text-slate-600 ${dense ? "py-4 text-xs" : "py-8 text-sm"}`}
            >
              {empty}
            </td>
          </tr>
        ) : (
          rows.map((row) => {
            const detail = expanded?.(row.original);
            return (
              <Fragment key={row.id}>
                <tr className="align-top hover:bg-slate-50" data-testid={rowTestId}>
                  {row.getVisibleCells().map((cell) => {
                    const meta = cell.column.columnDef.meta;
                    return (
                      <td
                        key={cell.id}
                        className={`${cellPad} ${meta?.align === "right" ? "text-right tabular-nums" : ""} ${meta?.className ?? ""}`}
                      >
                        {renderTemplate(cell.column.columnDef.cell, cell.getContext())}
                      </td>
                    );
                  })}
                </tr>
                {detail ? (
                  <tr>
                    <td colSpan={row.getVisibleCells().length} className="bg-slate-50 px-2 py-2">
                      {detail}
                    </td>
                  </tr>
                ) : null}
              </Fragment>
            );
          })
        )}
        {rows.length < all.length ? (
          <tr>
            <td colSpan={columns.length} className="py-2 text-xs text-slate-500" data-testid="table-more">
              {`Showing ${rows.length.toLocaleString("en")} of ${all.length.toLocaleString("en")} rows: sort, or narrow them with the search.`}
            </td>
          </tr>
        ) : null}
      </tbody>
    </table>
  );
}

/**
 * A column's header or cell, called as a render function. TanStack's flexRender mounts a function
 * as a component: pages define their columns inline (each render makes new functions), so every
 * re-render (a 3 s poll) unmounted and remounted each cell — and a confirmation dialog opened from
 * one (parity's Repair) lost its DOM while a person typed the reason (e2e/parity.spec.ts).
 * Called directly, React keeps what the function returns. No cell may use hooks.
 */
function renderTemplate<P>(template: string | ((props: P) => ReactNode) | undefined, props: P): ReactNode {
  return typeof template === "function" ? template(props) : (template ?? null);
}
