import { Time } from "@/components/ui/time";
import { PHASE_INFO, PLAN_PHASES, type PlanPhase } from "@/server/schemas/plan";

interface Transition {
  id: string;
  to: PlanPhase;
  at: Date;
  reason: string | null;
}

/** The DATA-BALANCE steps with where the plan is: done, current (since when) or to come. */
export function PhaseTimeline({ phase, transitions }: { phase: PlanPhase; transitions: Transition[] }) {
  const current = PLAN_PHASES.indexOf(phase);
  const steps = PLAN_PHASES.filter((p) => p !== "complete");
  const enteredAt = (p: PlanPhase) => transitions.filter((t) => t.to === p).at(-1)?.at;
  return (
    <ol aria-label="Migration phases" className="grid grid-cols-8 gap-2">
      {steps.map((step, index) => {
        const state = index < current ? "done" : index === current ? "current" : "todo";
        const info = PHASE_INFO[step];
        const at = enteredAt(step);
        return (
          <li
            key={step}
            aria-current={state === "current" ? "step" : undefined}
            data-state={state}
            className={`relative rounded-md border p-2.5 ${
              state === "current"
                ? "border-sky-600 bg-sky-50 ring-1 ring-sky-600"
                : state === "done"
                  ? "border-emerald-300 bg-emerald-50/60"
                  : "border-slate-200 bg-white"
            }`}
          >
            <div className="flex items-center gap-1.5">
              <span
                aria-hidden
                className={`grid size-6 shrink-0 place-items-center rounded-full text-xs font-bold ${
                  state === "current"
                    ? "bg-sky-700 text-white"
                    : state === "done"
                      ? "bg-emerald-600 text-white"
                      : "bg-slate-200 text-slate-600"
                }`}
              >
                {state === "done" ? "✓" : info.letter}
              </span>
              <span className="text-xs font-semibold leading-tight text-slate-900">{info.title}</span>
            </div>
            <p className="mt-1.5 text-[0.7rem] leading-snug text-slate-600">{info.summary}</p>
            <p className="mt-1.5 text-[0.7rem] font-medium text-slate-700">
              {state === "done" ? "Done" : state === "current" ? "Current" : "To come"}
              {state !== "todo" && at ? (
                <span className="block font-normal text-slate-500">
                  since <Time value={at} compact />
                </span>
              ) : null}
            </p>
          </li>
        );
      })}
    </ol>
  );
}
