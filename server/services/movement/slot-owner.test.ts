// No slot without an owner. (1) A start killed between creating the slot on legacy and recording
// the movement left a `preparing` movement and a slot nobody streamed, for ever: the workers now
// find the start's lock free, drop the slot and publication, and give the claim up, so a new start
// works. (2) A failed movement's slot keeps its WAL: it is sampled, shown in the plan's figures,
// and warned about past the plan's threshold.
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { failMovement } from "../../engine/store/movement-context";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startMovementOn, waitForBackfill } from "../../testing/movement-fixture";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";
import { systemActor } from "../actor";
import { getPlanFigures } from "../plans/figures";
import { replicationNames, startDataMovement } from "./movement";

const ROOT = path.resolve(import.meta.dirname, "../../..");
const actor = systemActor("slot-owner-test", "engineer@test");
const DDL =
  "create table items (tenant_id bigint not null, id bigint not null, v text, primary key (tenant_id, id))";
let control: Awaited<ReturnType<typeof useControlPlane>>;
const databases: TestDatabase[] = [];
let worker: Worker | undefined;
let child: ChildProcess | undefined;

async function database(prefix: string, ddl?: string): Promise<TestDatabase> {
  const d = await createTestDatabase(prefix);
  databases.push(d);
  if (ddl) {
    await d.pool.query(ddl);
    await d.pool.query(
      "insert into items select t, g, 'row' from generate_series(1, 5) t, generate_series(1, 20) g",
    );
  }
  return d;
}

async function slotExists(legacy: TestDatabase, slot: string): Promise<boolean> {
  const { rows } = await legacy.pool.query("select 1 from pg_replication_slots where slot_name = $1", [slot]);
  return rows.length > 0;
}

// A logical slot is listed while it is still being created, and its creation waits for every
// transaction then open on the whole server, other test files' included (a long apply on a shared
// server took more than a minute in CI). It is created once it has a confirmed position.
async function slotCreated(legacy: TestDatabase, slot: string): Promise<boolean> {
  const { rows } = await legacy.pool.query(
    "select 1 from pg_replication_slots where slot_name = $1 and confirmed_flush_lsn is not null",
    [slot],
  );
  return rows.length > 0;
}

beforeAll(async () => {
  control = await useControlPlane("slot_owner_cp");
});

afterAll(async () => {
  child?.kill("SIGKILL");
  await worker?.stop();
  await control?.drop();
  for (const d of databases) await d.drop();
});

describe("a start killed after it created the slot", () => {
  it("leaves no slot behind: a worker drops it and gives the claim up", { timeout: 360_000 }, async () => {
    const legacy = await database("slot_owner_legacy", DDL);
    const shard = await database("slot_owner_shard");
    const plan = await planAtTwoWayCdc(actor, "killed-start", legacy.url, [shard.url]);
    const { slotName } = replicationNames(plan.id);

    // The start records the movement in one transaction that also replaces the backfill tasks:
    // holding that table makes the start wait there, its slot already created on legacy.
    const blocker = new pg.Client({ connectionString: control.url });
    await blocker.connect();
    try {
      await blocker.query("begin; lock table backfill_task in share mode");
      const started = spawn(
        process.execPath,
        ["--import", "tsx", "server/testing/start-process.ts", plan.id],
        {
          cwd: ROOT,
          env: { ...process.env },
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      child = started;
      let output = "";
      started.stdout?.on("data", (d: Buffer) => {
        output += d.toString();
      });
      started.stderr?.on("data", (d: Buffer) => {
        output += d.toString();
      });
      const exited = new Promise((resolve) => started.once("exit", resolve));
      const withOutput = (e: unknown) => {
        throw new Error(`${(e as Error).message}\nThe start printed:\n${output}`);
      };
      await waitFor("the start to create the slot", () => slotCreated(legacy, slotName), 200_000).catch(
        withOutput,
      );
      await waitFor(
        "the start to wait on the backfill tasks",
        async () => {
          const { rows } = await blocker.query<{ n: number }>(
            "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
          );
          return (rows[0]?.n ?? 0) > 0;
        },
        60_000,
      ).catch(withOutput);
      started.kill("SIGKILL");
      await exited;
      expect(output).not.toMatch(/started/);
    } finally {
      await blocker.query("commit").catch(() => {});
      await blocker.end();
    }
    await waitFor("the killed start's transaction to end", async () => {
      const m = await db().dataMovement.findUnique({ where: { planId: plan.id } });
      return m?.status === "preparing";
    });
    expect(await slotExists(legacy, slotName)).toBe(true);

    worker = await startWorker(control.url, { log: () => {} });
    await waitFor(
      "the workers to drop the orphaned slot",
      async () => !(await slotExists(legacy, slotName)),
      60_000,
    );
    const movement = await waitFor("the claim given up", async () => {
      const m = await db().dataMovement.findUnique({ where: { planId: plan.id } });
      return m?.status === "cancelled" ? m : null;
    });
    expect(movement.status).toBe("cancelled");
    const { rows: publications } = await legacy.pool.query(
      "select 1 from pg_publication where pubname = $1",
      [movement.publicationName],
    );
    expect(publications).toHaveLength(0);
    const events = await db().engineEvent.findMany({ where: { planId: plan.id, level: "warn" } });
    expect(events.map((e) => e.message).join("\n")).toMatch(/stopped before it recorded the movement/);

    // Nothing is left in the way of a new start.
    await startDataMovement(actor, { planId: plan.id, reason: "again", resetShards: true });
    expect((await db().dataMovement.findUniqueOrThrow({ where: { planId: plan.id } })).status).toBe(
      "running",
    );
    expect(await slotExists(legacy, slotName)).toBe(true);
  });
});

describe("a failed movement's slot", () => {
  it("has its retained WAL sampled and shown, with a warning past the threshold", {
    timeout: 180_000,
  }, async () => {
    worker ??= await startWorker(control.url, { log: () => {} });
    const legacy = await database("slot_wal_legacy", DDL);
    const shard = await database("slot_wal_shard");
    const { planId } = await startMovementOn(actor, "failed-slot", legacy.url, [shard.url]);
    await waitForBackfill(planId);
    await db().$executeRaw`
      update plan set settings = jsonb_set(settings, '{slotRetainedWarnMb}', '1') where id = ${planId}::uuid`;
    expect(await failMovement(planId, "test", "The shard refused a row (test).")).toBe(true);
    // About 5 MB of WAL that nobody streams.
    await legacy.pool.query(
      "insert into items select 1000 + g / 100, g, repeat('x', 300) from generate_series(1, 15000) g",
    );

    const figures = await waitFor(
      "the slot's retained WAL in the plan's figures",
      async () => {
        const f = await getPlanFigures(planId);
        return f.slot && f.slot.retainedBytes > 2 * 1024 * 1024 ? f : null;
      },
      90_000,
    );
    expect(figures.slot).toMatchObject({ streaming: false, warn: true, warnBytes: 1024 * 1024 });
    const warning = await waitFor("a warning event", () =>
      db().engineEvent.findFirst({ where: { planId, level: "warn", source: "slot" } }),
    );
    expect(warning.message).toMatch(/MB of WAL and nothing streams it \(the movement is failed\)/);
  });
});
