// Issue 14's promotion figures (`--only promotion`): a cohort ladder whose first step holds
// `--promotion-tenants` tenants (500 by default), promoted under the SDK write workload through the
// service the UI calls (promote), run by the real worker's promotion runner (its cutovers
// `promotionConcurrency` at a time, each a requestCutover as a person's).
//
//   1. the ladder drawn (cohorts.ts drawLadder: a count step, then 100%), as an operator draws it;
//   2. the SDK workload (cutover.ts) writing to the cohort's tenants and as many that stay;
//   3. promote: the gates judged first. The bench trips the breaker and has no soak before this
//      step, so gates that do not pass are overridden as an admin may (with a reason, audited) and
//      named in the report's notes: the figure is the promotion's pace, not the gates';
//   4. the promotion row polled until it ended (every tenant done or aborted) or the deadline
//      (`--promotion-seconds`): then it is stopped and what it reached is reported, as the cutover
//      step reports a deadline;
//   5. figures from the promotion's and its cutovers' own rows: promote → ended, done / aborted,
//      cutovers/s, freeze p50/p99 (freeze_started_at → freeze_ended_at), the SDK calls that met a
//      freeze, and the ledger sample read back from each tenant's owner.
// The tenants are handed back to legacy by the map afterwards (step 6 cancels the movement).
import { db } from "@/server/db";
import { ZDrawLadderInput } from "@/server/schemas/cohorts";
import type { Actor } from "@/server/services/actor";
import { drawLadder } from "@/server/services/cohorts/cohorts";
import { promote, stopPromotion } from "@/server/services/cohorts/promotion";
import { type BenchCluster, LEGACY_DB, SHARD_DB } from "./cluster";
import {
  planDatabaseUrls,
  type SdkWorkloadSummary,
  startCutoverWorkload,
  waitForCutoverReady,
  waitForWrites,
} from "./cutover";
import { releaseTenantsForCancel } from "./cutover-step";
import type { BenchOptions } from "./options";
import { type BenchReport, figure } from "./report";
import { type LagSummary, pollUntil, sleep, summarizeLags } from "./stats";

/** promote past a gate that does not pass is an admin's call (audited with its reason). */
const benchAdmin: Actor = {
  id: null,
  email: "bench-admin@shardshift.local",
  role: "admin",
  requestId: "bench",
};
const ENDED = ["done", "stopped", "failed"];

export interface PromotionStepResult {
  tenants: number;
  status: string;
  /** The deadline passed before every tenant ended: the promotion was stopped there. */
  deadlineHit: boolean;
  overriddenGates: string[];
  done: number;
  aborted: number;
  /** promote's call → the promotion's end (every tenant done or aborted), or → the deadline. */
  seconds: number;
  donePerSecond: number;
  freeze: LagSummary;
  /** Aborts by reason (first 120 characters), most frequent first. */
  reasons: { reason: string; count: number }[];
  sdk: SdkWorkloadSummary;
}

export async function runPromotionStep(ctx: {
  planId: string;
  cluster: BenchCluster;
  options: BenchOptions;
  log: (line: string) => void;
}): Promise<PromotionStepResult> {
  const { planId, cluster, options, log } = ctx;
  const size = options.promotionTenants;
  await pollUntil(
    "the tenant census (the ladder is drawn from it)",
    async () => (await db().dataMovement.findUnique({ where: { planId } }))?.censusAt,
    { timeoutMs: 120_000, intervalMs: 250 },
  );
  // 1. the ladder
  const existing = await db().cohort.count({ where: { planId } });
  await drawLadder(
    benchAdmin,
    ZDrawLadderInput.parse({
      planId,
      policy: {
        steps: [
          { label: `bench ${size}`, kind: "count", value: size },
          { label: "everyone", kind: "percent", value: 100 },
        ],
        holdTags: [],
      },
      redraw: existing > 0,
      reason: existing > 0 ? "bench: the promotion step's ladder" : undefined,
    }),
  );
  const members = await db().cohortMember.findMany({
    where: { planId, ordinal: 1 },
    select: { tenantKey: true },
  });
  const cohort = members.map((m) => m.tenantKey);
  const cohortSet = new Set(cohort);
  const census = await db().tenantCensus.findMany({
    where: { planId },
    select: { tenantKey: true },
    distinct: ["tenantKey"],
  });
  const staying = census
    .map((c) => c.tenantKey)
    .filter((t) => !cohortSet.has(t))
    .slice(0, cohort.length);
  log(`    ladder drawn: cohort 1 holds ${cohort.length} tenants`);
  await waitForCutoverReady(
    planId,
    cohort[0] as string,
    "forward replication to report a lag that allows a cutover",
  );
  // 2. writes
  const { names } = await planDatabaseUrls(planId, {
    legacy: cluster.legacy.url(LEGACY_DB),
    shards: cluster.shards.map((s) => s.url(SHARD_DB)),
  });
  const workload = await startCutoverWorkload({
    planId,
    databases: names,
    tenants: [...cohort, ...staying],
    writesPerSecond: options.cutoverWriteRate,
  });
  let sdk: SdkWorkloadSummary;
  let promotionId = "";
  let started = 0;
  let endedAt = 0;
  let deadlineHit = false;
  let overriddenGates: string[] = [];
  try {
    await waitForWrites(workload, options.cutoverWriteRate);
    // 3. promote
    started = Date.now();
    const input = { planId, ordinal: 1, reason: `bench: promote a cohort of ${size} tenants` };
    const promoted = await promote(benchAdmin, input).catch(async (error: Error) => {
      if (!/cannot be promoted now/.test(error.message)) throw error;
      log(`    gates: ${error.message}`);
      return promote(benchAdmin, {
        ...input,
        overrideReason:
          "bench: the promotion's pace is measured, not its gates (the bench tripped the breaker and has no soak)",
      });
    });
    promotionId = promoted.promotionId;
    // 4. until it ended, or the deadline
    const deadline = started + options.promotionSeconds * 1000;
    let nextLog = Date.now() + 15_000;
    for (;;) {
      const row = await db().promotion.findUniqueOrThrow({ where: { id: promotionId } });
      overriddenGates = (row.overriddenGates as string[]) ?? [];
      if (ENDED.includes(row.status)) {
        endedAt = row.endedAt?.getTime() ?? Date.now();
        break;
      }
      if (Date.now() > deadline && !deadlineHit) {
        deadlineHit = true;
        endedAt = Date.now();
        log(
          `    deadline (${options.promotionSeconds} s): ${row.tenantsDone} done, ${row.tenantsAborted} aborted of ${row.tenantsTotal}; stopping the promotion`,
        );
        await stopPromotion(benchAdmin, { promotionId, reason: "bench: the step's deadline passed" });
      }
      if (Date.now() > nextLog) {
        nextLog += 15_000;
        log(
          `    ${row.status}: ${row.tenantsDone} done, ${row.tenantsAborted} aborted of ${row.tenantsTotal}`,
        );
      }
      await sleep(500);
    }
  } finally {
    sdk = await workload.stop();
  }
  // 5. figures
  const row = await db().promotion.findUniqueOrThrow({
    where: { id: promotionId },
    select: { status: true, tenantsDone: true, tenantsAborted: true },
  });
  const cutoverIds = (
    await db().promotionTenant.findMany({
      where: { promotionId, cutoverId: { not: null } },
      select: { cutoverId: true },
    })
  ).map((t) => t.cutoverId as string);
  const cutovers = await db().tenantCutover.findMany({
    where: { id: { in: cutoverIds } },
    select: { status: true, error: true, freezeStartedAt: true, freezeEndedAt: true, endedAt: true },
  });
  const freeze = summarizeLags(
    cutovers.flatMap((c) =>
      c.freezeStartedAt && c.freezeEndedAt ? [c.freezeEndedAt.getTime() - c.freezeStartedAt.getTime()] : [],
    ),
  );
  const reasonCounts = new Map<string, number>();
  for (const c of cutovers) {
    if (c.status !== "aborted") continue;
    const reason = (c.error ?? "no reason recorded").replace(/\d+/g, "N").slice(0, 120);
    reasonCounts.set(reason, (reasonCounts.get(reason) ?? 0) + 1);
  }
  const seconds = (endedAt - started) / 1000;
  const result: PromotionStepResult = {
    tenants: cohort.length,
    status: row.status,
    deadlineHit,
    overriddenGates,
    done: row.tenantsDone,
    aborted: row.tenantsAborted,
    seconds,
    donePerSecond: row.tenantsDone / seconds,
    freeze,
    reasons: [...reasonCounts]
      .map(([reason, count]) => ({ reason, count }))
      .sort((a, b) => b.count - a.count),
    sdk,
  };
  log(`    ${describePromotion(result)}`);
  log(
    `    SDK workload: ${sdk.acknowledged} writes at ${sdk.writesPerSecond.toFixed(0)}/s; ${sdk.metFreeze.count} met a freeze: p50 ${sdk.metFreeze.p50.toFixed(0)} ms, p99 ${sdk.metFreeze.p99.toFixed(0)} ms; ledger sample: ${sdk.ledgerProblems.length} of ${sdk.ledgerChecked} wrong`,
  );
  await releaseTenantsForCancel(planId, log);
  return result;
}

export function describePromotion(r: PromotionStepResult): string {
  return (
    `promotion of ${r.tenants} tenants: ${r.status}${r.deadlineHit ? " (stopped at the deadline)" : ""}, ${r.done} done, ${r.aborted} aborted ` +
    `in ${r.seconds.toFixed(1)} s = ${r.donePerSecond.toFixed(2)} cutovers/s; freeze p50 ${r.freeze.p50.toFixed(0)} ms, p99 ${r.freeze.p99.toFixed(0)} ms`
  );
}

export function addPromotionFigures(
  report: BenchReport,
  options: BenchOptions,
  r: PromotionStepResult,
): void {
  const what = `a cohort of ${r.tenants} tenants under ${options.cutoverWriteRate} SDK writes/s`;
  report.add({
    figure: figure("promotion.seconds", r.seconds, "s"),
    label: r.deadlineHit
      ? `promote → the ${options.promotionSeconds} s deadline (not every tenant had ended: ${r.done} done, ${r.aborted} aborted), ${what}`
      : `promote → every tenant done or aborted, ${what}`,
  });
  report.add({
    figure: figure("promotion.done", r.done, "tenants", r.tenants),
    label: `promotion: tenants on their shards (${r.aborted} aborted, reasons in the notes)`,
    baselineLabel: "in the cohort",
  });
  report.add({
    figure: figure("promotion.rate.per_s", r.donePerSecond, "cutovers/s"),
    label: "promotion: cutovers done per second (promote → end)",
  });
  for (const key of ["p50", "p99"] as const) {
    report.add({
      figure: figure(`promotion.freeze.${key}_ms`, r.freeze[key], "ms"),
      label: `promotion: cutover freeze window ${key} (${r.freeze.count} attempts that froze)`,
    });
  }
  report.add({
    figure: figure("promotion.sdk.freeze_wait.p99_ms", r.sdk.metFreeze.p99, "ms"),
    label: `promotion: SDK calls that met a freeze, p99 (p50 ${r.sdk.metFreeze.p50.toFixed(0)} ms, ${r.sdk.metFreeze.count} calls)`,
  });
  report.add({
    figure: figure("promotion.ledger.wrong", r.sdk.ledgerProblems.length, "writes", r.sdk.ledgerChecked),
    label: "promotion: sampled acknowledged writes not found on their owner afterwards",
    baselineLabel: "sampled",
    aim: { text: "0", check: (f) => f.value === 0 },
  });
  if (r.overriddenGates.length) {
    report.note(
      `Promotion: gates overridden by the bench (admin, audited): ${r.overriddenGates.join(", ")}.`,
    );
  }
  for (const { reason, count } of r.reasons) report.note(`Promotion: ${count} × aborted: ${reason}`);
  if (r.sdk.unexpected.length) {
    report.note(
      `Promotion: the SDK workload saw ${r.sdk.unexpected.length} unexpected errors; the first: ${r.sdk.unexpected[0]}`,
    );
  }
}
