// A parity run's liveness on real servers: a check whose worker died (its heartbeat stopped) is
// marked failed by the next pass instead of showing "running" for ever, a live one is left alone,
// and a check whose last write waits on a lock for longer than an interactive transaction may
// live (Prisma's 5 s) still completes.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { systemActor } from "../../services/actor";
import { startDataMovement } from "../../services/movement/movement";
import { getParityStatus } from "../../services/parity/parity";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { runParityCheck } from "../parity/run-check";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
let planId: string;
const actor = systemActor("parity-liveness-test", "engineer@test");

beforeAll(async () => {
  control = await useControlPlane("live_control");
  legacy = await createTestDatabase("live_legacy");
  shard = await createTestDatabase("live_shard");
  await legacy.pool.query(
    "create table items (tenant_id int not null, id int not null, note text, primary key (tenant_id, id))",
  );
  const plan = await planAtTwoWayCdc(actor, "liveness", legacy.url, [shard.url]);
  planId = plan.id;
  await startDataMovement(actor, { planId, reason: "parity liveness" });
}, 60_000);

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

describe("parity run liveness", () => {
  it("fails a run whose worker stopped, at the next pass and when the status is read", async () => {
    const dead = await db().parityRun.create({
      data: {
        planId,
        kind: "full",
        startedAt: new Date(Date.now() - 600_000),
        heartbeatAt: new Date(Date.now() - 300_000),
      },
    });
    const alive = await db().parityRun.create({ data: { planId, kind: "recent" } });
    expect((await getParityStatus(planId)).checking).toBe(true);

    await runParityCheck(planId, "full");
    const after = await db().parityRun.findUniqueOrThrow({ where: { id: dead.id } });
    expect(after.status).toBe("failed");
    expect(after.error).toContain("The worker running this check stopped");
    expect(after.finishedAt).not.toBeNull();
    expect((await db().parityRun.findUniqueOrThrow({ where: { id: alive.id } })).status).toBe("running");

    // Reading the status fails an abandoned run too (no pass needed).
    await db().parityRun.update({
      where: { id: alive.id },
      data: { heartbeatAt: new Date(Date.now() - 120_000) },
    });
    const status = await getParityStatus(planId);
    expect(status.checking).toBe(false);
    expect(status.runs.find((r) => r.id === alive.id.toString())?.status).toBe("failed");
  });

  it("completes a check whose record step waits on a lock for longer than 5 s", {
    timeout: 60_000,
  }, async () => {
    // An open mismatch the next full check proves gone (both sides are empty), row-locked elsewhere
    // (as a repair would) for 7 s: closing it waits, and the check must still complete.
    const earlier = await db().parityRun.create({ data: { planId, kind: "full", status: "complete" } });
    const mismatch = await db().parityMismatch.create({
      data: {
        planId,
        runId: earlier.id,
        tableName: '"public"."items"',
        tenantKey: "1",
        shardOrdinal: 0,
        rowKey: ["1", "1"],
        kind: "extra",
        columns: [],
      },
    });
    const locker = new pg.Client({ connectionString: control.url });
    await locker.connect();
    try {
      await locker.query("begin");
      await locker.query("select 1 from parity_mismatch where id = $1 for update", [mismatch.id.toString()]);
      const release = (async () => {
        await new Promise((r) => setTimeout(r, 7_000));
        await locker.query("commit");
      })();
      const result = await runParityCheck(planId, "full");
      await release;
      const run = await db().parityRun.findUniqueOrThrow({ where: { id: result.runId } });
      expect(run.status).toBe("complete");
      expect(run.error).toBeNull();
      expect((await db().parityMismatch.findUniqueOrThrow({ where: { id: mismatch.id } })).status).toBe(
        "resolved",
      );
    } finally {
      await locker.end();
    }
  });
});
