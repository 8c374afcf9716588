"use client";

// Every plan page answers "is it safe, and what is happening?" in the same header: phase, breaker,
// CDC lag and parity. Until the engine runs a step, its indicator says so in words.
import { useQuery } from "@tanstack/react-query";
import Link from "next/link";
import { usePathname } from "next/navigation";
import { useTRPC } from "@/components/providers/trpc";
import { Badge } from "@/components/ui/badge";
import type { PlanPhase } from "@/server/schemas/plan";
import { PhaseBadge } from "./phase";

interface PlanHeaderProps {
  plan: {
    id: string;
    name: string;
    phase: PlanPhase;
    status: string;
    source: { name: string };
    shards: { name: string }[];
    shardKeyColumn: string;
  };
}

function useLiveIndicators(planId: string) {
  const trpc = useTRPC();
  const status = useQuery({
    ...trpc.movement.status.queryOptions({ planId, minutes: 1 }),
    refetchInterval: 3_000,
  });
  const movement = status.data?.movement ?? null;
  const lag = status.data?.samples.filter((s) => s.name === "cdc.lag_ms").at(-1);
  const streaming = movement && ["running", "paused"].includes(movement.status);
  const parity = useQuery({
    ...trpc.parity.status.queryOptions({ planId, minutes: 1 }),
    refetchInterval: 5_000,
  });
  return { movement, lagMs: streaming && lag ? lag.value : null, streaming, parity: parity.data };
}

export function PlanHeader({ plan }: PlanHeaderProps) {
  const pathname = usePathname();
  const live = useLiveIndicators(plan.id);
  const tabs = [
    { href: `/plans/${plan.id}`, label: "Overview" },
    { href: `/plans/${plan.id}/backfill`, label: "Backfill & CDC" },
    { href: `/plans/${plan.id}/parity`, label: "Parity" },
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
        </div>
        <dl className="grid grid-cols-4 gap-2 text-xs" aria-label="Plan status">
          <Indicator label="Phase">
            <PhaseBadge phase={plan.phase} status={plan.status} />
          </Indicator>
          <Indicator label="Breaker">
            <Badge tone="neutral">Not armed</Badge>
          </Indicator>
          <Indicator label="CDC lag">
            {live.movement?.status === "failed" ? (
              <Badge tone="danger">Stopped (error)</Badge>
            ) : live.streaming ? (
              live.lagMs === null ? (
                <Badge tone="info">Streaming</Badge>
              ) : (
                <Badge
                  tone={live.lagMs > 5_000 ? "warn" : "ok"}
                >{`${Math.round(live.lagMs).toLocaleString()} ms`}</Badge>
              )
            ) : (
              <Badge tone="neutral">Not streaming</Badge>
            )}
          </Indicator>
          <Indicator label="Parity">
            {live.parity?.state === "clean" ? (
              <Badge tone="ok">Clean</Badge>
            ) : live.parity?.state === "drift" ? (
              <Badge tone="danger">{`Drift: ${live.parity.openMismatches} row${live.parity.openMismatches === 1 ? "" : "s"}`}</Badge>
            ) : (
              <Badge tone="neutral">Not checked yet</Badge>
            )}
          </Indicator>
        </dl>
      </div>
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
