import { describe, expect, it } from "vitest";
import { DEFAULT_PLAN_SETTINGS, PLAN_PHASES, type PlanPhase } from "../../schemas/plan";
import { decideTransition, type PlanFacts } from "./plan-phase";

const now = new Date("2026-11-24T12:00:00Z");
const facts = (phase: PlanPhase, extra: Partial<PlanFacts> = {}): PlanFacts => ({
  phase,
  status: "active",
  phaseEnteredAt: now,
  settings: DEFAULT_PLAN_SETTINGS,
  now,
  ...extra,
});

describe("plan phase state machine", () => {
  it("advances one step at a time through all eight DATA-BALANCE phases", () => {
    const daysAgo = (d: number) => new Date(now.getTime() - d * 86_400_000);
    let phase: PlanPhase = "define_key";
    const seen: PlanPhase[] = [phase];
    for (;;) {
      const outcome = decideTransition(facts(phase, { phaseEnteredAt: daysAgo(30) }), "advance");
      if (!outcome.allowed) break;
      phase = outcome.to.phase;
      seen.push(phase);
    }
    expect(seen).toEqual([...PLAN_PHASES]);
  });

  it("refuses to advance past complete, and says why", () => {
    const outcome = decideTransition(facts("complete"), "advance");
    expect(outcome).toEqual({ allowed: false, reason: expect.stringMatching(/complete/) });
  });

  it("holds clean-up until the soak is over", () => {
    const outcome = decideTransition(facts("live_rollback"), "advance");
    expect(outcome.allowed).toBe(false);
    if (!outcome.allowed) expect(outcome.reason).toMatch(/14 days left/);
    const later = decideTransition(
      facts("live_rollback", { phaseEnteredAt: new Date(now.getTime() - 14 * 86_400_000) }),
      "advance",
    );
    expect(later).toEqual({ allowed: true, to: { phase: "native_cleanup", status: "active" } });
  });

  it("reverts only where nothing irreversible happened", () => {
    expect(decideTransition(facts("define_key"), "revert").allowed).toBe(false);
    expect(decideTransition(facts("async_backfill"), "revert")).toEqual({
      allowed: true,
      to: { phase: "two_way_cdc", status: "active" },
    });
    expect(decideTransition(facts("native_cleanup"), "revert").allowed).toBe(false);
  });

  it("keeps the plan in Two-way CDC while a replication slot is held", () => {
    const outcome = decideTransition(facts("two_way_cdc", { replicationActive: true }), "revert");
    expect(outcome).toEqual({ allowed: false, reason: expect.stringMatching(/Cancel it first/) });
    expect(decideTransition(facts("two_way_cdc", { replicationActive: false }), "revert").allowed).toBe(true);
  });

  it("archives only while nothing runs, and an archived plan refuses everything", () => {
    expect(decideTransition(facts("define_key"), "archive")).toEqual({
      allowed: true,
      to: { phase: "define_key", status: "archived" },
    });
    const midway = decideTransition(facts("async_backfill"), "archive");
    expect(midway.allowed).toBe(false);
    for (const event of ["advance", "revert", "archive"] as const) {
      const outcome = decideTransition(facts("application_router", { status: "archived" }), event);
      expect(outcome).toEqual({ allowed: false, reason: expect.stringMatching(/archived/) });
    }
  });
});
