"use client";

import { Fragment, useState } from "react";
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

export function AuditTable({ events, compact = false }: { events: AuditRow[]; compact?: boolean }) {
  const [open, setOpen] = useState<string | null>(null);
  if (events.length === 0)
    return <p className="py-6 text-center text-sm text-slate-600">No audit events match.</p>;
  return (
    <table className="w-full text-left text-xs">
      <thead className="text-slate-500">
        <tr>
          <th className="py-1.5 pr-2 font-medium">#</th>
          <th className="py-1.5 pr-2 font-medium">Time</th>
          <th className="py-1.5 pr-2 font-medium">Actor</th>
          <th className="py-1.5 pr-2 font-medium">Action</th>
          <th className="py-1.5 pr-2 font-medium">Target</th>
          <th className="py-1.5 pr-2 font-medium">Reason</th>
          {compact ? null : <th className="py-1.5 font-medium">Details</th>}
        </tr>
      </thead>
      <tbody className="divide-y divide-slate-100">
        {events.map((event) => (
          <Fragment key={event.seq}>
            <tr className="align-top" data-testid="audit-row">
              <td className="py-1.5 pr-2 font-mono text-slate-500">{event.seq}</td>
              <td className="py-1.5 pr-2">
                <Time value={event.at} />
              </td>
              <td className="py-1.5 pr-2">
                {event.actorEmail} <span className="text-slate-500">({event.role})</span>
              </td>
              <td className="py-1.5 pr-2 font-mono">{event.action}</td>
              <td className="py-1.5 pr-2">
                <Target event={event} />
              </td>
              <td className="py-1.5 pr-2 text-slate-700">
                {event.reason ?? <span className="text-slate-400">—</span>}
              </td>
              {compact ? null : (
                <td className="py-1.5">
                  <button
                    type="button"
                    aria-expanded={open === event.seq}
                    className="text-sky-700 hover:underline"
                    onClick={() => setOpen(open === event.seq ? null : event.seq)}
                  >
                    {open === event.seq ? "Hide" : "Before / after"}
                  </button>
                </td>
              )}
            </tr>
            {open === event.seq ? (
              <tr>
                <td colSpan={7} className="bg-slate-50 px-2 py-2">
                  <div className="grid grid-cols-2 gap-3">
                    <Json label="Before" value={event.before} />
                    <Json label="After" value={event.after} />
                  </div>
                  <p className="mt-2 font-mono text-[0.65rem] text-slate-500">
                    request {event.requestId}
                    {event.clientRequestId ? ` (client's id ${event.clientRequestId})` : ""} · hash{" "}
                    {event.hash}
                  </p>
                </td>
              </tr>
            ) : null}
          </Fragment>
        ))}
      </tbody>
    </table>
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
