// Issue 14's "Done means" for promotion, on real servers under the SDK ledger workload: a drawn
// ladder (3 tenants, then 12, then everyone) is promoted cohort by cohort by a worker process —
// refused first while a gate fails (cohort 2 before cohort 1) and while one cannot see (a gate
// window longer than the lag history) — and the worker is SIGKILLed in the middle of cohort 2's
// promotion: a new worker takes the promotion over from its rows and finishes it. Aborted tenants
// (a missed freeze budget on a loaded machine, or the kill) stay on legacy and are retried with
// the retry action. Afterwards: no acknowledged write lost, every row equal on legacy and the
// shards, each tenant wholly on one side. Reports each promotion's time and its freeze p99.
//
// Scale by env: SHARDSHIFT_PROMOTE_TENANTS (default 40), SHARDSHIFT_PROMOTE_RATE (writes/s, 200).
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
  startWorkerProcess,
  waitForGatesOpen,
  waitForMoreWrites,
} from "../../testing/promotion-fixture";
import { waitFor } from "../../testing/worker-process";
import { drawLadder } from "./cohorts";
import { listPromotions, previewPromotion, promote } from "./promotion";

const TENANTS = Number(process.env.SHARDSHIFT_PROMOTE_TENANTS ?? 40);
const RATE = Number(process.env.SHARDSHIFT_PROMOTE_RATE ?? 200);

let servers: PromotionServers;

beforeAll(async () => {
  servers = await startPromotionServers("pl", { tenants: TENANTS, rows: TENANTS * 150, seed: 21 });
}, 180_000);

afterAll(async () => {
  await servers?.close();
});

describe("cohort promotion", () => {
  it("promotes cohort 1 then cohort 2 under SDK writes, refuses while a gate fails or cannot see, survives a SIGKILL", {
    timeout: 1_500_000,
  }, async () => {
    // The loaded machine's settings (the fixture says why), 4 cutovers at a time.
    const lines: string[] = [];
    const {
      plan,
      worker: first,
      slotName,
      schema,
    } = await planReadyForCohorts(servers, "promotion ledger", LOADED_MACHINE_SETTINGS, lines);
    await drawLadder(
      operator,
      ZDrawLadderInput.parse({
        planId: plan.id,
        policy: {
          steps: [
            { label: "canary", kind: "count", value: 3 },
            { label: "early", kind: "count", value: 12 },
            { label: "all", kind: "percent", value: 100 },
          ],
        },
      }),
    );

    const router = await startPlanRouter(servers, plan.id);
    const { all, workload } = startTenantWorkload(router, TENANTS, RATE);
    const figures: string[] = [];
    try {
      // Refused while a gate fails: cohort 2 before cohort 1 is on its shards.
      await expect(promote(operator, { planId: plan.id, ordinal: 2, reason: "too early" })).rejects.toThrow(
        /Cohort 1 soaked is fail: .*not on their shard/,
      );
      // Refused while a gate cannot see: a 60-min window over a few minutes of lag history.
      await setSettings(plan.id, { gateWindowMinutes: 60 });
      await expect(promote(operator, { planId: plan.id, ordinal: 1, reason: "blind" })).rejects.toThrow(
        // Either reason is a gate that cannot see: no sample yet right after the backfill, or too
        // short a history for the window (a fresh clone's run met the first).
        /Forward lag \(legacy → shards\) is inconclusive: (No forward lag has been measured yet|.*wait for a whole window)/,
      );
      // An operator cannot override; the refusal says an admin may.
      await expect(
        promote(operator, { planId: plan.id, ordinal: 1, reason: "blind", overrideReason: "I know" }),
      ).rejects.toThrow(/Only an admin/);
      await setSettings(plan.id, { gateWindowMinutes: 1 });
      expect(await db().promotion.count({ where: { planId: plan.id } })).toBe(0);

      // Cohort 1: the dry run, then the promotion.
      await waitForGatesOpen(plan.id, 1);
      const preview = await previewPromotion({ planId: plan.id, ordinal: 1 });
      expect(preview.blockers).toEqual([]);
      expect(preview.tenants.map((t) => t.position)).toEqual([1, 2, 3]);
      expect(preview.tenants.every((t) => t.expectedFreezeMs !== null && t.to !== null)).toBe(true);
      const one = await promote(operator, { planId: plan.id, ordinal: 1, reason: "canary" });
      expect(one.tenants).toBe(3);
      const oneDone = await finishPromotion(plan.id, one.promotionId);
      expect(oneDone.tenants.every((t) => t.status === "done")).toBe(true);

      // Cohort 2 (its 9 tenants still on legacy), with the worker killed mid-way.
      await waitForGatesOpen(plan.id, 2);
      const two = await promote(operator, { planId: plan.id, ordinal: 2, reason: "next step" });
      expect(two.tenants).toBe(9);
      await waitFor(
        "cohort 2's promotion to be half way",
        async () => {
          const [p] = await listPromotions({ planId: plan.id, promotionId: two.promotionId, limit: 1 });
          return p && p.counts.done + p.counts.aborted >= 2 && p.counts.inFlight > 0;
        },
        300_000,
      );
      await first.kill("SIGKILL");
      const [atKill] = await listPromotions({ planId: plan.id, promotionId: two.promotionId, limit: 1 });
      note(`killed worker ${first.pid} with cohort 2 at ${JSON.stringify(atKill?.counts)}`);
      expect(atKill?.status).toBe("running");
      const second = await startWorkerProcess(servers);
      note(`worker ${second.pid} running`);
      const twoDone = await finishPromotion(plan.id, two.promotionId);
      expect(twoDone.tenants.every((t) => t.status === "done")).toBe(true);
      expect(twoDone.worker).toContain(String(second.pid));

      for (const p of [oneDone, twoDone]) figures.push(await promotionFigure(plan.id, p));
      await waitForMoreWrites(workload);
    } finally {
      await workload.stop();
    }
    const stats = workload.stats();
    console.log(
      `promotion-ledger: ${figures.join("; ")}; ${stats.acknowledged} writes acknowledged ` +
        `(${stats.writesPerSecond.toFixed(0)}/s), retries ${JSON.stringify(stats.retries)}`,
    );
    // Each tenant wholly on one side: cohort 2's 12 on their shards, the rest on legacy.
    await expectNothingLost(servers, {
      planId: plan.id,
      slotName,
      schema,
      workload,
      tenants: all,
      promotedThrough: 2,
    });
  });
});
