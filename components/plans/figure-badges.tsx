"use client";

// The words and colours of a plan's live figures, shared by the plan header and the fleet list so
// a figure reads the same wherever it appears.
import type { inferRouterOutputs } from "@trpc/server";
import Link from "next/link";
import { Badge, type Tone } from "@/components/ui/badge";
import { percentText } from "@/components/ui/progress";
import { relative, useNow } from "@/components/ui/time";
import type { AppRouter } from "@/server/trpc/root";

type Figures = inferRouterOutputs<AppRouter>["figures"]["plan"];
const nf = new Intl.NumberFormat();

export function LagBadge({ lag, thresholdMs = 5_000 }: { lag: Figures["lag"]; thresholdMs?: number }) {
  const now = useNow();
  switch (lag.state) {
    case "stopped":
      return <Badge tone="danger">Stopped (error)</Badge>;
    case "not_streaming":
      return <Badge tone="neutral">Not streaming</Badge>;
    case "waiting":
      return <Badge tone="info">Streaming, not measured yet</Badge>;
    case "measured": {
      const ms = `${nf.format(Math.round(lag.ms))} ms`;
      if (!lag.fresh) {
        // No change applied lately: the last measurement, with its age, not a green "now".
        return (
          <span title={`Measured ${new Date(lag.at).toISOString()}`}>
            <Badge tone="neutral">{`${ms}, ${now ? relative(new Date(lag.at), now) : "earlier"}`}</Badge>
          </span>
        );
      }
      return <Badge tone={lag.ms > thresholdMs ? "warn" : "ok"}>{ms}</Badge>;
    }
  }
}

/**
 * Reverse replication lag (shard → legacy): "—" while no tenant is on a shard, since nothing flows
 * back then and a "0 ms" would claim a stream that does not exist.
 */
export function ReverseLagBadge({
  lag,
  thresholdMs = 5_000,
}: {
  lag: Figures["reverseLag"];
  thresholdMs?: number;
}) {
  const now = useNow();
  switch (lag.state) {
    case "none_on_shards":
      return (
        <span title="No tenant is on a shard: nothing is replicated back to legacy yet.">
          <Badge tone="neutral">—</Badge>
        </span>
      );
    case "waiting":
      return <Badge tone="info">Not measured yet</Badge>;
    case "measured": {
      const ms = `${nf.format(Math.round(lag.ms))} ms`;
      if (!lag.fresh) {
        return (
          <span title={`Measured ${new Date(lag.at).toISOString()}`}>
            <Badge tone="neutral">{`${ms}, ${now ? relative(new Date(lag.at), now) : "earlier"}`}</Badge>
          </span>
        );
      }
      return <Badge tone={lag.ms > thresholdMs ? "warn" : "ok"}>{ms}</Badge>;
    }
  }
}

/**
 * Writes the fences refused, as a badge linking to the routing page's list; nothing when there are
 * none (a refusal is worth a look: an application writing around the router, or a stale map).
 */
export function StrayWritesLink({ planId, stray }: { planId: string; stray: Figures["strayWrites"] }) {
  if (stray.total === 0) return null;
  return (
    <Link
      href={`/plans/${planId}/routing#stray-writes`}
      data-testid="stray-writes-link"
      title={`${nf.format(stray.notOwner)} to a database that does not own the tenant; the rest while it was frozen. Each was rolled back.`}
      className="hover:underline"
    >
      <Badge tone={stray.notOwner > 0 ? "danger" : "warn"}>
        {nf.format(stray.total)} stray write{stray.total === 1 ? "" : "s"} refused
      </Badge>
    </Link>
  );
}

/** The lag in words for a card: the same figure as LagBadge. */
export function lagText(lag: Figures["lag"], now: number | null): string {
  switch (lag.state) {
    case "stopped":
      return "Stopped (error)";
    case "not_streaming":
      return "Not streaming";
    case "waiting":
      return "Not measured yet";
    case "measured": {
      const ms = `${nf.format(Math.round(lag.ms))} ms`;
      return lag.fresh ? ms : `${ms}, ${now ? relative(new Date(lag.at), now) : "earlier"}`;
    }
  }
}

/** Whether CDC keeps the shards current (what a clean parity result needs to still hold). */
export function isStreaming(lag: Figures["lag"]): boolean {
  return lag.state === "measured" || lag.state === "waiting";
}

const BREAKER_WORDS: Record<Figures["breaker"]["state"], { word: string; tone: Tone }> = {
  armed: { word: "Armed", tone: "ok" },
  tripped: { word: "Tripped", tone: "danger" },
  rolling_back: { word: "Rolling back", tone: "warn" },
  rolled_back: { word: "Tripped · rolled back", tone: "danger" },
  failed: { word: "Tripped · rollback failed", tone: "danger" },
};

/** The plan's breaker by word and colour; the title says who tripped it, when and why. */
export function BreakerBadge({ breaker }: { breaker: Figures["breaker"] }) {
  const { word, tone } = BREAKER_WORDS[breaker.state];
  const title =
    breaker.state === "armed"
      ? "Armed: one trip moves the chosen tenants back to legacy."
      : `Tripped by ${breaker.trippedBy} at ${breaker.trippedAt?.toLocaleString()}: ${breaker.reason}${breaker.error ? ` — ${breaker.error}` : ""}`;
  return (
    <span title={title} data-testid="breaker-state">
      <Badge tone={tone}>{word}</Badge>
    </span>
  );
}

/** "Backfill 45% · about 4 min (3–6)"; the stage in words when there is no fraction. */
export function progressText(
  figures: Pick<Figures, "progress" | "movementStatus" | "tenants">,
  { withEta = true } = {},
): string {
  const { progress } = figures;
  switch (progress.stage) {
    case "not_started":
      return "Nothing moved yet";
    case "cancelled":
      return "Cancelled";
    case "cutover":
      return `Backfill done · ${nf.format(figures.tenants.onShards)} tenant${figures.tenants.onShards === 1 ? "" : "s"} on shards`;
    case "backfill": {
      const pct = `Backfill ${percentText((progress.fraction ?? 0) * 100)}`;
      if (figures.movementStatus === "paused") return `${pct} · paused`;
      if (figures.movementStatus === "failed") return `${pct} · stopped`;
      if (!withEta) return pct;
      return progress.eta ? `${pct} · ${progress.eta.text}` : `${pct} · estimating…`;
    }
  }
}

/** The plan's progress in words, over a slim bar (the bar never alone). */
export function PlanProgress({
  figures,
  label,
  withEta = true,
}: {
  figures: Pick<Figures, "progress" | "movementStatus" | "tenants">;
  label: string;
  /** false where the ETA has its own column */
  withEta?: boolean;
}) {
  const fraction = figures.progress.stage === "backfill" ? (figures.progress.fraction ?? 0) : null;
  return (
    <div className="min-w-40">
      <p className="text-xs text-slate-800" data-testid="plan-progress">
        {progressText(figures, { withEta })}
      </p>
      {fraction !== null ? (
        <div
          role="progressbar"
          aria-label={label}
          aria-valuemin={0}
          aria-valuemax={100}
          aria-valuenow={Math.floor(fraction * 100)}
          className="mt-1 h-1.5 w-full overflow-hidden rounded-full bg-slate-200"
        >
          <div
            className="h-full rounded-full bg-sky-700"
            style={{ width: `${Math.min(100, fraction * 100)}%` }}
          />
        </div>
      ) : null}
    </div>
  );
}

/** Bytes in the largest unit that keeps a number ≥ 1: "241 MB", "1.2 GB". */
export function bytesText(bytes: number): string {
  const units = ["bytes", "kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

/**
 * The WAL the movement's slot holds on legacy, shown while nothing streams it (it grows with every
 * write) or while it is over the plan's threshold; nothing while a stream keeps it small.
 */
export function SlotRetention({
  slot,
  status,
}: {
  slot: Figures["slot"];
  status: Figures["movementStatus"];
}) {
  const now = useNow();
  if (!slot || (slot.streaming && slot.retainedBytes <= slot.warnBytes)) return null;
  const age = now ? `, measured ${relative(new Date(slot.at), now)}` : "";
  const text = slot.streaming
    ? `Legacy's replication slot holds ${bytesText(slot.retainedBytes)} of WAL${age}, over the ${bytesText(slot.warnBytes)} warning threshold.`
    : `Legacy's replication slot holds ${bytesText(slot.retainedBytes)} of WAL${age} and nothing streams it while the movement is ${status ?? "stopped"}: it grows with every write. Resume the movement once its cause is fixed, or cancel it to drop the slot.`;
  return (
    <p
      role="status"
      data-testid="slot-retention"
      className={`rounded-md border px-2.5 py-1.5 text-xs ${slot.warn || slot.retainedBytes > slot.warnBytes ? "border-amber-300 bg-amber-50 text-amber-900" : "border-slate-200 bg-white text-slate-700"}`}
    >
      <span className="font-medium">{slot.warn ? "Warning: " : "Slot: "}</span>
      {text}
    </p>
  );
}
