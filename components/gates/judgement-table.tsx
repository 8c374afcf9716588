"use client";

// Cohort gates and the breaker's trip rules share one shape (server/engine/gates/judgement.ts):
// one table renders both — name, verdict, measured value against its threshold, why, and a link to
// the evidence — so the cohorts page and the breaker page read the same way.
import Link from "next/link";
import { Badge, type Tone } from "@/components/ui/badge";
import { type ColumnDef, DataTable } from "@/components/ui/data-table";

const nf = new Intl.NumberFormat();

export const VERDICT_TONE: Record<string, Tone> = { pass: "ok", fail: "danger", inconclusive: "warn" };

export interface JudgementRow {
  id: string;
  title: string;
  verdict: "pass" | "fail" | "inconclusive";
  value: number | null;
  threshold: number | null;
  unit: string;
  reason: string;
  href: string;
}

export function JudgementTable({
  rows,
  label,
  nameHeader,
  verdictWords,
  rowTestId,
}: {
  rows: JudgementRow[];
  label: string;
  /** "Gate" or "Rule". */
  nameHeader: string;
  /** How a verdict reads here (a failing trip rule "would trip"); the verdict itself by default. */
  verdictWords?: Partial<Record<JudgementRow["verdict"], string>>;
  rowTestId: string;
}) {
  const columns: ColumnDef<JudgementRow>[] = [
    { id: "name", header: nameHeader, accessorFn: (g) => g.title },
    {
      id: "verdict",
      header: "Verdict",
      accessorFn: (g) => g.verdict,
      cell: ({ row: { original: g } }) => (
        <Badge tone={VERDICT_TONE[g.verdict]}>{verdictWords?.[g.verdict] ?? g.verdict}</Badge>
      ),
    },
    {
      id: "value",
      header: "Value",
      accessorFn: (g) => g.value ?? -1,
      cell: ({ row: { original: g } }) => (g.value === null ? "—" : `${nf.format(g.value)} ${g.unit}`),
      meta: { align: "right" },
    },
    {
      id: "threshold",
      header: "Threshold",
      accessorFn: (g) => g.threshold ?? -1,
      cell: ({ row: { original: g } }) =>
        g.threshold === null ? "—" : `${nf.format(g.threshold)} ${g.unit}`,
      meta: { align: "right" },
    },
    {
      id: "reason",
      header: "Why",
      accessorFn: (g) => g.reason,
      enableSorting: false,
      cell: ({ row: { original: g } }) => (
        <span className="text-xs text-slate-700" data-testid={`gate-reason-${g.id}`}>
          {g.reason}{" "}
          <Link href={g.href} className="text-sky-700 hover:underline">
            evidence
          </Link>
        </span>
      ),
    },
  ];
  return (
    <DataTable
      data={rows}
      columns={columns}
      label={label}
      getRowId={(g) => g.id}
      rowTestId={rowTestId}
      empty="Nothing to judge."
    />
  );
}
