// The benchmark's figures: what is measured, against which baseline, and whether it meets its aim.
// A figure is plain data ({ name, value, unit, baseline, ratio }) so the JSON file can be compared
// across runs; the table and the aim lines are rendered from the same entries.

export interface Figure {
  name: string;
  value: number;
  unit: string;
  baseline: number | null;
  /** value / baseline, or null without a baseline. */
  ratio: number | null;
}

export interface Aim {
  /** e.g. "ratio ≥ 0.6" */
  text: string;
  met: boolean;
}

export interface ReportEntry {
  figure: Figure;
  /** What the row measures, as a person reads it. */
  label: string;
  /** What the baseline is (e.g. "raw COPY pipe"), shown next to its value. */
  baselineLabel: string | null;
  aim: Aim | null;
}

export function figure(name: string, value: number, unit: string, baseline: number | null = null): Figure {
  const ratio = baseline !== null && baseline !== 0 && Number.isFinite(baseline) ? value / baseline : null;
  return { name, value, unit, baseline, ratio };
}

export class BenchReport {
  readonly entries: ReportEntry[] = [];
  readonly notes: string[] = [];

  add(entry: {
    figure: Figure;
    label: string;
    baselineLabel?: string;
    aim?: { text: string; check: (figure: Figure) => boolean };
  }): Figure {
    this.entries.push({
      figure: entry.figure,
      label: entry.label,
      baselineLabel: entry.baselineLabel ?? null,
      aim: entry.aim ? { text: entry.aim.text, met: entry.aim.check(entry.figure) } : null,
    });
    return entry.figure;
  }

  note(line: string): void {
    this.notes.push(line);
  }

  figures(): Figure[] {
    return this.entries.map((e) => e.figure);
  }
}

export function formatNumber(value: number, unit: string): string {
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  const text = value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  return `${text} ${unit}`;
}

function pad(text: string, width: number, right = false): string {
  return right ? text.padStart(width) : text.padEnd(width);
}

export function renderTable(entries: readonly ReportEntry[]): string {
  const rows = entries.map((e) => [
    e.label,
    formatNumber(e.figure.value, e.figure.unit),
    e.figure.baseline === null
      ? "—"
      : `${formatNumber(e.figure.baseline, e.figure.unit)}${e.baselineLabel ? ` (${e.baselineLabel})` : ""}`,
    e.figure.ratio === null ? "—" : e.figure.ratio.toFixed(2),
    e.aim ? `${e.aim.text} ${e.aim.met ? "✓ met" : "✗ not met"}` : "",
  ]);
  const header = ["what", "value", "baseline", "ratio", "aim"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => pad(c, widths[i] ?? 0, i === 1 || i === 3))
      .join("  ")
      .trimEnd();
  const rule = widths.map((w) => "─".repeat(w)).join("  ");
  return [line(header), rule, ...rows.map(line)].join("\n");
}

export function renderAimSummary(entries: readonly ReportEntry[]): string[] {
  return entries
    .filter((e): e is ReportEntry & { aim: Aim } => e.aim !== null)
    .map(
      (e) =>
        `${e.aim.met ? "MET    " : "NOT MET"}  ${e.label}: ratio ${e.figure.ratio?.toFixed(2) ?? "—"} (aim ${e.aim.text})`,
    );
}
