import { Badge, type Tone } from "@/components/ui/badge";
import { Time } from "@/components/ui/time";
import { PHASE_INFO, PLAN_PHASES, type PlanPhase } from "@/server/schemas/plan";

interface Transition {
  id: string;
  to: PlanPhase;
  at: Date;
  reason: string | null;
}

/** One step's state as the engine's facts show it (server/engine/state/plan-steps.ts). */
export interface Step {
  phase: PlanPhase;
  state: "not_started" | "running" | "paused" | "done" | "stopped" | "not_available";
  evidence: string;
  stale: boolean;
  alert: boolean;
}

const STATE: Record<Step["state"], { label: string; tone: Tone; card: string }> = {
  done: { label: "Done", tone: "ok", card: "border-emerald-300 bg-emerald-50/60" },
  running: { label: "Running", tone: "info", card: "border-sky-300 bg-sky-50/50" },
  paused: { label: "Paused", tone: "warn", card: "border-amber-300 bg-amber-50/50" },
  not_started: { label: "Not started", tone: "neutral", card: "border-slate-200 bg-white" },
  stopped: { label: "Stopped", tone: "danger", card: "border-red-300 bg-red-50/50" },
  not_available: {
    // The evidence says "Not available yet: …" in full; the badge stays on one line in a narrow column.
    label: "Unavailable",
    tone: "neutral",
    card: "border-dashed border-slate-300 bg-slate-50 text-slate-500",
  },
};

function look(step: Step) {
  const base = STATE[step.state];
  if (step.alert) return { ...base, tone: "danger" as Tone, card: "border-red-300 bg-red-50/50" };
  if (step.stale)
    return {
      ...base,
      label: `${base.label} · stale`,
      tone: "warn" as Tone,
      card: "border-amber-300 bg-amber-50/50",
    };
  return base;
}

/**
 * The DATA-BALANCE steps, each with its own state and the evidence for it (steps overlap: CDC and
 * the backfill run together, parity stays on), and where the plan's phase is, since when.
 */
export function PhaseTimeline({
  phase,
  transitions,
  steps,
}: {
  phase: PlanPhase;
  transitions: Transition[];
  steps: Step[];
}) {
  const enteredAt = (p: PlanPhase) => transitions.filter((t) => t.to === p).at(-1)?.at;
  return (
    <ol aria-label="Migration phases" className="grid grid-cols-8 gap-2">
      {steps.map((step) => {
        const info = PHASE_INFO[step.phase];
        const current = step.phase === phase;
        const passed = PLAN_PHASES.indexOf(step.phase) < PLAN_PHASES.indexOf(phase);
        const l = look(step);
        const at = current ? enteredAt(step.phase) : undefined;
        return (
          <li
            key={step.phase}
            aria-current={current ? "step" : undefined}
            data-state={step.state}
            data-stale={step.stale || undefined}
            className={`relative flex flex-col rounded-md border p-2.5 ${l.card} ${current ? "ring-2 ring-sky-700" : ""}`}
          >
            <div className="flex items-center gap-1.5">
              <span
                aria-hidden
                className={`grid size-6 shrink-0 place-items-center rounded-full text-xs font-bold ${
                  step.state === "done" && !step.stale
                    ? "bg-emerald-600 text-white"
                    : current
                      ? "bg-sky-700 text-white"
                      : "bg-slate-200 text-slate-600"
                }`}
              >
                {step.state === "done" && !step.stale ? "✓" : info.letter}
              </span>
              <span className="text-xs font-semibold leading-tight text-slate-900">{info.title}</span>
            </div>
            <div className="mt-1.5">
              <Badge tone={l.tone}>{l.label}</Badge>
            </div>
            <p
              className="mt-1.5 text-[0.7rem] leading-snug text-slate-700"
              data-testid={`evidence-${step.phase}`}
            >
              {step.evidence}
            </p>
            {current ? (
              <p className="mt-auto pt-1.5 text-[0.7rem] font-medium text-sky-800">
                Plan is here
                {at ? (
                  <span className="block font-normal text-slate-500">
                    since <Time value={at} compact />
                  </span>
                ) : null}
              </p>
            ) : passed ? (
              <p className="mt-auto pt-1.5 text-[0.7rem] text-slate-500">Plan passed this step</p>
            ) : null}
          </li>
        );
      })}
    </ol>
  );
}
