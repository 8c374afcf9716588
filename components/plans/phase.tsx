import { Badge, type Tone } from "@/components/ui/badge";
import { PHASE_INFO, PLAN_PHASES, type PlanPhase } from "@/server/schemas/plan";

export function phaseTone(phase: PlanPhase, status: string): Tone {
  if (status === "archived") return "neutral";
  if (phase === "complete") return "ok";
  return "info";
}

export function PhaseBadge({ phase, status }: { phase: PlanPhase; status: string }) {
  const step = PLAN_PHASES.indexOf(phase) + 1;
  return (
    <Badge tone={phaseTone(phase, status)}>
      {status === "archived" ? "Archived · " : ""}
      {phase === "complete" ? "Complete" : `${step}/8 ${PHASE_INFO[phase].title}`}
    </Badge>
  );
}
