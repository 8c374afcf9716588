"use client";

import { useState } from "react";
import { type ColumnDef, DataTable } from "@/components/ui/data-table";
import { Time } from "@/components/ui/time";

export interface AuditRow {
  seq: string;
  at: Date;
  actorEmail: string;
  role: string;
  action: string;
  targetType: string;
  targetId: string | null;
  /** the plan's or database's name (the user's email); null when unknown */
  targetName?: string | null;
  reason: string | null;
  before: unknown;
  after: unknown;
  requestId: string;
  clientRequestId?: string | null;
  hash: string;
}

export type AuditOrder = "newest" | "oldest";

/**
 * One page of audit events as the server returned it (DataTable's manual mode): the log has no
 * bound, so it is paged, filtered and ordered on the server — sorting "#" or "Time" (one order:
 * seq follows time) asks the server again through `onOrderChange`; without it nothing sorts.
 */
export function AuditTable({
  events,
  compact = false,
  order = "newest",
  onOrderChange,
}: {
  events: AuditRow[];
  compact?: boolean;
  order?: AuditOrder;
  onOrderChange?: (order: AuditOrder) => void;
}) {
  const [open, setOpen] = useState<string | null>(null);
  // Which header shows the order (both order by seq).
  const [by, setBy] = useState<"seq" | "at">("seq");
  const sortable = Boolean(onOrderChange);
  const columns: ColumnDef<AuditRow>[] = [
    {
      id: "seq",
      header: "#",
      accessorFn: (e) => e.seq,
      enableSorting: sortable,
      meta: { className: "font-mono text-slate-500" },
    },
    {
      id: "at",
      header: "Time",
      accessorFn: (e) => e.at,
      enableSorting: sortable,
      cell: ({ row }) => <Time value={row.original.at} />,
    },
    {
      id: "actor",
      header: "Actor",
      accessorFn: (e) => e.actorEmail,
      enableSorting: false,
      cell: ({ row: { original: e } }) => (
        <>
          {e.actorEmail} <span className="text-slate-500">({e.role})</span>
        </>
      ),
    },
    {
      id: "action",
      header: "Action",
      accessorFn: (e) => e.action,
      enableSorting: false,
      meta: { className: "font-mono" },
    },
    {
      id: "target",
      header: "Target",
      accessorFn: (e) => e.targetName ?? e.targetId ?? e.targetType,
      enableSorting: false,
      cell: ({ row }) => <Target event={row.original} />,
    },
    {
      id: "reason",
      header: "Reason",
      accessorFn: (e) => e.reason ?? "",
      enableSorting: false,
      cell: ({ row }) => row.original.reason ?? <span className="text-slate-400">—</span>,
      meta: { className: "text-slate-700" },
    },
    ...(compact
      ? []
      : [
          {
            id: "details",
            header: "Details",
            enableSorting: false,
            meta: { className: "whitespace-nowrap" },
            cell: ({ row: { original: e } }) => (
              <button
                type="button"
                aria-expanded={open === e.seq}
                className="text-sky-700 hover:underline"
                onClick={() => setOpen(open === e.seq ? null : e.seq)}
              >
                {open === e.seq ? "Hide" : "Before / after"}
              </button>
            ),
          } satisfies ColumnDef<AuditRow>,
        ]),
  ];
  return (
    <DataTable
      data={events}
      columns={columns}
      label="Audit events"
      dense
      manual={{
        sorting: [{ id: by, desc: order === "newest" }],
        onSortingChange: (next) => {
          const first = next[0];
          if (first?.id === "seq" || first?.id === "at") setBy(first.id);
          onOrderChange?.(first && !first.desc ? "oldest" : "newest");
        },
      }}
      getRowId={(e) => e.seq}
      rowTestId="audit-row"
      empty="No audit events match."
      expanded={(e) =>
        open === e.seq ? (
          <>
            <div className="grid grid-cols-2 gap-3">
              <Json label="Before" value={e.before} />
              <Json label="After" value={e.after} />
            </div>
            <p className="mt-2 font-mono text-[0.65rem] text-slate-500">
              request {e.requestId}
              {e.clientRequestId ? ` (client's id ${e.clientRequestId})` : ""} · hash {e.hash}
            </p>
          </>
        ) : null
      }
    />
  );
}

/** "plan EU split", the id on hover (and in the accessible name); the id itself when no name is known. */
function Target({ event }: { event: AuditRow }) {
  if (!event.targetId) return <>{event.targetType}</>;
  if (!event.targetName) {
    return (
      <>
        {event.targetType}
        <span className="block font-mono text-[0.65rem] text-slate-500">{event.targetId}</span>
      </>
    );
  }
  return (
    <span title={`${event.targetType} id ${event.targetId}`} data-testid="audit-target">
      <span className="text-slate-500">{event.targetType}</span>{" "}
      <span className="font-medium text-slate-800">{event.targetName}</span>
      <span className="sr-only"> (id {event.targetId})</span>
    </span>
  );
}

function Json({ label, value }: { label: string; value: unknown }) {
  return (
    <div>
      <p className="mb-1 text-[0.7rem] font-medium text-slate-600">{label}</p>
      <pre className="max-h-64 overflow-auto rounded border border-slate-200 bg-white p-2 text-[0.7rem]">
        {value === null || value === undefined ? "—" : JSON.stringify(value, null, 2)}
      </pre>
    </div>
  );
}
