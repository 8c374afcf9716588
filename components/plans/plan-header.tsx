"use client";

// Every plan page answers "is it safe, and what is happening?" in the same header: phase, progress,
// breaker, CDC lag and parity. Until the engine runs a step, its indicator says so in words.
import Link from "next/link";
import { usePathname } from "next/navigation";
import { BreakerControls } from "@/components/breaker/breaker-control";
import { Badge } from "@/components/ui/badge";
import type { PlanPhase } from "@/server/schemas/plan";
import {
  BreakerBadge,
  isStreaming,
  LagBadge,
  progressText,
  ReverseLagBadge,
  SlotRetention,
  StrayWritesLink,
} from "./figure-badges";
import { ParityIndicator } from "./parity-indicator";
import { PhaseBadge } from "./phase";
import { usePlanFigures } from "./use-plan-figures";

interface PlanHeaderProps {
  plan: {
    id: string;
    name: string;
    phase: PlanPhase;
    status: string;
    source: { name: string };
    shards: { id: string; name: string }[];
    shardKeyColumn: string;
    settings?: { cdcLagThresholdMs: number };
  };
}

export function PlanHeader({ plan }: PlanHeaderProps) {
  const pathname = usePathname();
  // The same figures (one query) as the page's cards below: header and cards cannot disagree.
  const figures = usePlanFigures(plan.id).data;
  const tabs = [
    { href: `/plans/${plan.id}`, label: "Overview" },
    { href: `/plans/${plan.id}/backfill`, label: "Backfill & CDC" },
    { href: `/plans/${plan.id}/parity`, label: "Parity" },
    { href: `/plans/${plan.id}/routing`, label: "Routing" },
    { href: `/plans/${plan.id}/cohorts`, label: "Cohorts" },
    { href: `/plans/${plan.id}/breaker`, label: "Breaker" },
    { href: `/plans/${plan.id}/settings`, label: "Settings" },
    { href: `/audit?planId=${plan.id}`, label: "Audit" },
  ];
  return (
    <div className="mb-5 space-y-3">
      <div className="flex flex-wrap items-center justify-between gap-3">
        <div>
          <p className="text-xs text-slate-500">
            <Link href="/" className="hover:underline">
              Plans
            </Link>{" "}
            /
          </p>
          <h1 className="text-xl font-semibold tracking-tight">{plan.name}</h1>
          <p className="text-xs text-slate-600">
            {plan.source.name} → {plan.shards.length} shard{plan.shards.length === 1 ? "" : "s"} (
            {plan.shards.map((s) => s.name).join(", ")}) · key{" "}
            <code className="font-mono">{plan.shardKeyColumn}</code>
          </p>
          <div className="mt-2">
            <BreakerControls plan={plan} state={figures ? figures.breaker.state : null} />
          </div>
        </div>
        <dl className="grid grid-cols-6 gap-2 text-xs" aria-label="Plan status">
          <Indicator label="Phase">
            <PhaseBadge phase={plan.phase} status={plan.status} />
          </Indicator>
          <Indicator label="Progress">
            {figures ? (
              <span className="text-slate-800" data-testid="header-progress">
                {progressText(figures)}
              </span>
            ) : (
              <Badge tone="neutral">…</Badge>
            )}
          </Indicator>
          <Indicator label="Breaker">
            {figures ? <BreakerBadge breaker={figures.breaker} /> : <Badge tone="neutral">…</Badge>}
          </Indicator>
          <Indicator label="CDC lag">
            {figures ? (
              <span data-testid="header-lag">
                <LagBadge lag={figures.lag} thresholdMs={plan.settings?.cdcLagThresholdMs} />
              </span>
            ) : (
              <Badge tone="neutral">…</Badge>
            )}
          </Indicator>
          <Indicator label="Reverse lag">
            {figures ? (
              <span data-testid="header-reverse-lag">
                <ReverseLagBadge lag={figures.reverseLag} thresholdMs={plan.settings?.cdcLagThresholdMs} />
              </span>
            ) : (
              <Badge tone="neutral">…</Badge>
            )}
          </Indicator>
          <Indicator label="Parity">
            {figures ? (
              <ParityIndicator parity={figures.parity} streaming={isStreaming(figures.lag)} />
            ) : (
              <Badge tone="neutral">…</Badge>
            )}
          </Indicator>
        </dl>
      </div>
      {figures ? <SlotRetention slot={figures.slot} status={figures.movementStatus} /> : null}
      {figures && figures.strayWrites.total > 0 ? (
        <p className="text-xs text-slate-700" role="status">
          <StrayWritesLink planId={plan.id} stray={figures.strayWrites} /> The in-database fences refused
          writes to a tenant on a database that does not own it or while it was frozen: see which on the
          Routing tab.
        </p>
      ) : null}
      <nav aria-label="Plan" className="flex gap-1 border-b border-slate-200">
        {tabs.map((tab) => {
          const active = pathname === tab.href;
          return (
            <Link
              key={tab.href}
              href={tab.href}
              aria-current={active ? "page" : undefined}
              className={`-mb-px border-b-2 px-3 py-1.5 text-sm ${active ? "border-sky-700 font-medium text-slate-900" : "border-transparent text-slate-600 hover:text-slate-900"}`}
            >
              {tab.label}
            </Link>
          );
        })}
      </nav>
    </div>
  );
}

function Indicator({ label, children }: { label: string; children: React.ReactNode }) {
  return (
    <div className="rounded-md border border-slate-200 bg-white px-2.5 py-1.5">
      <dt className="text-[0.7rem] text-slate-500">{label}</dt>
      <dd className="mt-0.5">{children}</dd>
    </div>
  );
}
