// Issue 14's ladder over the demo tenants, on real servers under the SDK ledger workload: the
// plan's default ladder (1% → 5% → 25% → 100%; nested, so 2 / 10 / 50 / 200 of 200 tenants) drawn
// over the demo dataset and promoted cohort by cohort by a worker process until every tenant is on
// its shard. Before each cohort, its promotion is refused with the gate's reason while a gate fails
// (the next cohort before this one is on its shards; this one before the previous has soaked) and
// while a gate cannot see (a gate window longer than the lag history). Afterwards: no acknowledged
// write lost, every row equal on legacy and the shards, each tenant wholly on its shard.
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
import { drawLadder } from "./cohorts";
import { previewPromotion, promote } from "./promotion";

const TENANTS = Number(process.env.SHARDSHIFT_LADDER_TENANTS ?? 100);
const RATE = Number(process.env.SHARDSHIFT_LADDER_RATE ?? 200);
const PERCENTS = [1, 5, 25, 100];

let servers: PromotionServers;

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
        await setSettings(plan.id, { gateWindowMinutes: 1 });
        expect(await db().promotion.count({ where: { planId: plan.id } })).toBe(i);

        await waitForGatesOpen(plan.id, ordinal);
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
