// The demo's sample plan: whoever opens `npm run demo` finds a migration already moving data
// (backfill + forward CDC from legacy into the demo's shards), not an empty list.
//
// It is set up through the services, as the system actor `demo-setup`, so each step is audited as an
// operator's would be: created on legacy and the demo's shards, advanced through "Define the key"
// and "Application router" to "Two-way CDC", data movement started.
//
// Once per control plane. A re-run of the demo (an existing data directory) finds the plan by name
// and leaves it as people left it (paused, cancelled, archived…); it only finishes a setup that a
// crash interrupted, i.e. while the plan has never had a data movement. A control plane that already
// holds other plans (a data directory from before the sample existed) gets no sample: its shards
// may hold another plan's rows, and the sample would only add a plan nobody asked for.
import { db } from "../db";
import { DEFAULT_PLAN_SETTINGS, type PlanPhase, type TPlanSettings, ZCreatePlanInput } from "../schemas/plan";
import type { Actor } from "../services/actor";
import { startDataMovement } from "../services/movement/movement";
import { createPlan, transitionPlan } from "../services/plans/plans";

export const SAMPLE_PLAN_NAME = "Sample - monolith to shards";

/**
 * Slow enough that the default million rows take a few minutes, so the demo shows a copy in
 * progress rather than a finished one; an operator raises it on the Backfill tab.
 */
export const SAMPLE_BACKFILL_ROWS_PER_SECOND = 5_000;

export type SampleStep =
  | { kind: "create" }
  | { kind: "advance"; reason: string }
  | { kind: "start" }
  | { kind: "keep"; why: string }
  | { kind: "skip"; why: string };

export interface SampleFacts {
  /** The sample plan, if one exists. */
  sample: { phase: PlanPhase; status: string; movementStatus: string | null } | null;
  /** Plans other than the sample (archived ones too). */
  otherPlans: number;
}

const ADVANCE_REASONS: Partial<Record<PlanPhase, string>> = {
  define_key: "Demo: tenant_id is the shard key of every tenant-owned table",
  application_router: "Demo: the write workload stands in for applications using the router",
};

/** The next set-up step, from the store's facts alone, so a restarted demo picks up where it was. */
export function nextSampleStep(facts: SampleFacts): SampleStep {
  const { sample } = facts;
  if (!sample) {
    if (facts.otherPlans > 0) {
      return {
        kind: "skip",
        why: `the control plane already has ${facts.otherPlans} plan${facts.otherPlans === 1 ? "" : "s"}`,
      };
    }
    return { kind: "create" };
  }
  if (sample.movementStatus) return { kind: "keep", why: `its data movement is ${sample.movementStatus}` };
  if (sample.status !== "active") return { kind: "keep", why: `it is ${sample.status}` };
  const reason = ADVANCE_REASONS[sample.phase];
  if (reason) return { kind: "advance", reason };
  if (sample.phase === "two_way_cdc") return { kind: "start" };
  return { kind: "keep", why: `it is in the ${sample.phase} phase` };
}

export interface SamplePlanOutcome {
  planId: string | null;
  /** What happened, for the demo's log: "created and moving data", "kept: …", "not added: …". */
  summary: string;
}

async function readFacts(): Promise<SampleFacts & { planId: string | null; version: number }> {
  const sample = await db().plan.findUnique({
    where: { name: SAMPLE_PLAN_NAME },
    include: { movement: { select: { status: true } } },
  });
  const otherPlans = await db().plan.count({ where: { name: { not: SAMPLE_PLAN_NAME } } });
  return {
    planId: sample?.id ?? null,
    version: sample?.version ?? 0,
    otherPlans,
    sample: sample
      ? {
          phase: sample.phase as PlanPhase,
          status: sample.status,
          movementStatus: sample.movement?.status ?? null,
        }
      : null,
  };
}

export async function ensureSamplePlan(
  actor: Actor,
  topology: { legacyName: string; shardNames: string[] },
): Promise<SamplePlanOutcome> {
  const settings: TPlanSettings = {
    ...DEFAULT_PLAN_SETTINGS,
    backfillRowsPerSecond: SAMPLE_BACKFILL_ROWS_PER_SECOND,
  };
  let created = false;
  // At most create, two advances and a start: the bound only guards against a step that changes nothing.
  for (let turn = 0; turn < 6; turn++) {
    const facts = await readFacts();
    const step = nextSampleStep(facts);
    switch (step.kind) {
      case "create": {
        const databases = await db().database.findMany({
          where: { name: { in: [topology.legacyName, ...topology.shardNames] } },
        });
        const idOf = (name: string) => {
          const found = databases.find((d) => d.name === name);
          if (!found) throw new Error(`The demo database "${name}" is not registered in the control plane.`);
          return found.id;
        };
        await createPlan(
          actor,
          ZCreatePlanInput.parse({
            name: SAMPLE_PLAN_NAME,
            sourceDatabaseId: idOf(topology.legacyName),
            shardDatabaseIds: topology.shardNames.map(idOf),
            shardKeyColumn: "tenant_id",
            settings,
          }),
        );
        created = true;
        break;
      }
      case "advance":
        await transitionPlan(actor, {
          planId: facts.planId ?? "",
          expectedVersion: facts.version,
          event: "advance",
          reason: step.reason,
        });
        break;
      case "start":
        await startDataMovement(actor, {
          planId: facts.planId ?? "",
          reason: "Demo: show a migration moving data from the start",
        });
        return {
          planId: facts.planId,
          summary: `${created ? "created" : "set-up finished"}; backfill and CDC into ${topology.shardNames.join(", ")} started`,
        };
      case "keep":
        return { planId: facts.planId, summary: `kept as it was (${step.why})` };
      case "skip":
        return { planId: null, summary: `not added: ${step.why}` };
    }
  }
  throw new Error(`The sample plan "${SAMPLE_PLAN_NAME}" did not reach "Two-way CDC"; see its audit log.`);
}
