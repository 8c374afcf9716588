// Issue 14's ladder over the demo tenants, on real servers under the SDK ledger workload: the
// plan's default ladder (1% → 5% → 25% → 100%; nested, so 2 / 10 / 50 / 200 of 200 tenants) drawn
// over the demo dataset and promoted cohort by cohort by a worker process until every tenant is on
// its shard. Before each cohort, its promotion is refused with the gate's reason while a gate fails
// (the next cohort before this one is on its shards; this one before the previous has soaked) and
// while a gate cannot see (a gate window longer than the lag history). Afterwards: no acknowledged
// write lost, every row equal on legacy and the shards, each tenant wholly on its shard. On the way,
// the plan's phase follows the tenants: bit-by-bit routing is entered once cohort 1 may be promoted
// (refused while its gates cannot see), and the breaker's soak once every tenant is on its shard
// with the breaker armed.
//
// Scale by env: SHARDSHIFT_LADDER_TENANTS (default 100: 1 / 5 / 25 / 100; 200 took 21 min on a loaded 2-core machine), SHARDSHIFT_LADDER_RATE (writes/s, 200).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { ZDrawLadderInput } from "../../schemas/cohorts";
import {
  expectNothingLost,
  finishPromotion,
  LOADED_MACHINE_SETTINGS,
  note,
  promotionOperator as operator,
  type PromotionServers,
  planReadyForCohorts,
  promotionFigure,
  setSettings,
  startPlanRouter,
  startPromotionServers,
  startTenantWorkload,
  waitForGatesOpen,
  waitForMoreWrites,
} from "../../testing/promotion-fixture";
import { waitFor } from "../../testing/worker-process";
import { requestParityCheck } from "../parity/parity";
import { getPlan, transitionPlan } from "../plans/plans";
import { drawLadder } from "./cohorts";
import { previewPromotion, promote } from "./promotion";

const TENANTS = Number(process.env.SHARDSHIFT_LADDER_TENANTS ?? 100);
const RATE = Number(process.env.SHARDSHIFT_LADDER_RATE ?? 200);
const PERCENTS = [1, 5, 25, 100];

let servers: PromotionServers;

/** Advances the plan one phase as the operator (refused with the guard's reason if it may not). */
async function advance(planId: string, reason: string) {
  const plan = await getPlan(planId);
  await transitionPlan(operator, { planId, expectedVersion: plan.version, event: "advance", reason });
}

async function advanceRefusal(planId: string): Promise<string | null> {
  const outcome = (await getPlan(planId)).available.advance;
  return outcome.allowed ? null : outcome.reason;
}

beforeAll(async () => {
  servers = await startPromotionServers("dl", { tenants: TENANTS, rows: TENANTS * 60, seed: 14 });
}, 180_000);

afterAll(async () => {
  await servers?.close();
});

describe("the demo ladder", () => {
  it("promotes 1%, 5%, 25% and 100% of the demo tenants under SDK writes, each refused while a gate fails or cannot see", {
    timeout: 1_500_000,
  }, async () => {
    const { plan, slotName, schema } = await planReadyForCohorts(servers, "demo ladder", {
      ...LOADED_MACHINE_SETTINGS,
      cohortPercents: PERCENTS,
      promotionConcurrency: 8,
    });
    // The plan's own ladder (no policy given): its cohortPercents, nested.
    await drawLadder(operator, ZDrawLadderInput.parse({ planId: plan.id }));
    const members = await db().cohortMember.findMany({ where: { planId: plan.id } });
    const cumulative = PERCENTS.map((_, i) => members.filter((m) => (m.ordinal ?? 99) <= i + 1).length);
    expect(cumulative).toEqual(PERCENTS.map((p) => Math.ceil((TENANTS * p) / 100)));
    note(`ladder drawn: ${cumulative.join(" / ")} of ${TENANTS} tenants`);

    const router = await startPlanRouter(servers, plan.id);
    const { all, workload } = startTenantWorkload(router, TENANTS, RATE);
    const figures: string[] = [];
    try {
      for (const [i] of PERCENTS.entries()) {
        const ordinal = i + 1;
        const refused = (o: number, reason: string) =>
          promote(operator, { planId: plan.id, ordinal: o, reason });
        // Refused while a gate fails: the next cohort before this one is on its shards.
        if (ordinal < PERCENTS.length) {
          await expect(refused(ordinal + 1, "too early")).rejects.toThrow(
            new RegExp(
              `Cohort ${ordinal} soaked is fail: \\d+ of cohort ${ordinal}'s \\d+ tenants are not on their shard`,
            ),
          );
        }
        // Refused while the previous cohort has not soaked (1 min asked, just promoted).
        if (ordinal > 1) {
          await setSettings(plan.id, { gateSoakMinutes: 1 });
          await expect(refused(ordinal, "not soaked")).rejects.toThrow(
            new RegExp(
              `Cohort ${ordinal - 1} soaked is fail: Cohort ${ordinal - 1} has run on its shards for [\\d.]+ of 1 min`,
            ),
          );
          await setSettings(plan.id, { gateSoakMinutes: 0 });
        }
        // Refused while a gate cannot see: a 60-min window over minutes of lag history.
        await setSettings(plan.id, { gateWindowMinutes: 60 });
        await expect(refused(ordinal, "blind")).rejects.toThrow(
          /Forward lag \(legacy → shards\) is inconclusive: (No forward lag has been measured yet|.*wait for a whole window)/,
        );
        if (ordinal === 1) {
          // Build item 5: the backfill is left for bit-by-bit routing only once cohort 1 may be
          // promoted — not while its gates cannot see.
          await advance(plan.id, "CDC streams");
          expect(await advanceRefusal(plan.id)).toMatch(/Cohort 1 may not be promoted yet: .*inconclusive/);
        }
        await setSettings(plan.id, { gateWindowMinutes: 1 });
        expect(await db().promotion.count({ where: { planId: plan.id } })).toBe(i);

        await waitForGatesOpen(plan.id, ordinal);
        if (ordinal === 1) {
          await advance(plan.id, "cohort 1 may be promoted");
          expect((await getPlan(plan.id)).phase).toBe("bit_by_bit_routing");
        }
        const preview = await previewPromotion({ planId: plan.id, ordinal });
        expect(preview.blockers).toEqual([]);
        const fresh = (cumulative[i] ?? 0) - (cumulative[i - 1] ?? 0);
        expect(preview.tenants).toHaveLength(fresh);
        const started = await promote(operator, {
          planId: plan.id,
          ordinal,
          reason: `ladder step ${ordinal}`,
        });
        expect(started.tenants).toBe(fresh);
        const done = await finishPromotion(plan.id, started.promotionId);
        expect(done.tenants.every((t) => t.status === "done")).toBe(true);
        figures.push(await promotionFigure(plan.id, done));
        note(figures.at(-1) ?? "");
      }
      // Nothing is left to promote.
      await expect(
        promote(operator, { planId: plan.id, ordinal: PERCENTS.length, reason: "again" }),
      ).rejects.toThrow(/there is nothing to promote/);
      await waitForMoreWrites(workload);
    } finally {
      await workload.stop();
    }
    // Build item 5: with every tenant on its shard and the breaker armed (never tripped here), bit-by-bit
    // routing is done, the breaker's soak counts, and the plan moves on to it once parity holds.
    const routed = await getPlan(plan.id);
    expect(routed.steps.find((s) => s.phase === "bit_by_bit_routing")).toMatchObject({ state: "done" });
    expect(routed.steps.find((s) => s.phase === "live_rollback")).toMatchObject({
      state: "running",
      evidence: expect.stringMatching(/^Soaking: the breaker armed with every tenant on the shards since/),
    });
    await advance(plan.id, "every tenant on its shard");
    expect((await getPlan(plan.id)).phase).toBe("automated_parity");
    await requestParityCheck(operator, { planId: plan.id, kind: "full" });
    await waitFor(
      "a clean full parity check (the soak's last condition)",
      async () => (await getPlan(plan.id)).available.advance.allowed,
      300_000,
    ).catch(async (error: Error) => {
      throw new Error(`${error.message}; still: ${await advanceRefusal(plan.id)}`);
    });
    await advance(plan.id, "parity holds, breaker armed");
    expect((await getPlan(plan.id)).phase).toBe("live_rollback");
    const stats = workload.stats();
    console.log(
      `demo-ladder: ${TENANTS} tenants; ${figures.join("; ")}; ${stats.acknowledged} writes acknowledged ` +
        `(${stats.writesPerSecond.toFixed(0)}/s), retries ${JSON.stringify(stats.retries)}`,
    );
    await expectNothingLost(servers, {
      planId: plan.id,
      slotName,
      schema,
      workload,
      tenants: all,
      promotedThrough: PERCENTS.length,
    });
  });
});
