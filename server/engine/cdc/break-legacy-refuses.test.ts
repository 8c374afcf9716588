// Adversarial (issue 11): legacy refuses ordinary connections for a moment — "too many connections"
// on a busy monolith — while the CDC stream restarts. Replication connections are not counted
// against that limit, so the new runner's stream starts, and then its ordinary connection to legacy
// (for partial updates and type checks) is refused.
//
// Defect (was, in the old cdc-runner.ts): `ctx.source.connect()` ran after
// ReplicationStream.start() and outside the try/finally that stops the stream. When it threw, the
// started stream was never stopped: it kept answering the server's keepalives (so
// wal_sender_timeout never ended it) and held the slot, in a runner the CDC thread had already
// forgotten. Every later runner was refused the slot ("in use by another consumer"); after ~16 s the
// failure streak failed the movement with that message, and resuming could not help. Fixed by the
// split into parts: StreamReader.open stops its stream when its source session cannot be had.
// Checked: with that connect moved back out of the try, this test fails again (slot in use,
// movement failed).
import crypto from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { systemActor } from "../../services/actor";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase, testServerUrl } from "../../testing/databases";
import { startMovementOn, waitForBackfill, waitForCatchUp } from "../../testing/movement-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";
import { readSlotStatus } from "./slot";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
let worker: Worker | undefined;
const logs: string[] = [];
const actor = systemActor("break-legacy-refuses", "engineer@test");
const role = `ss_break_${crypto.randomBytes(4).toString("hex")}`;
const password = crypto.randomBytes(12).toString("hex");
const DDL =
  "create table items (tenant_id bigint not null, id bigint not null, v text, primary key (tenant_id, id))";

async function asAdmin(sql: string) {
  const admin = new pg.Client({ connectionString: testServerUrl() });
  await admin.connect();
  try {
    await admin.query(sql);
  } finally {
    await admin.end();
  }
}

beforeAll(async () => {
  control = await useControlPlane("brk_refuse_control");
  legacy = await createTestDatabase("brk_refuse_legacy");
  shard = await createTestDatabase("brk_refuse_shard");
  // Legacy is reached as an ordinary role (not a superuser): the role's connection limit is the
  // "too many connections" lever, and replication connections are not subject to it.
  await asAdmin(`create role ${role} login replication password '${password}'`);
  await asAdmin(`grant pg_monitor to ${role}`);
  await asAdmin(`grant create on database ${legacy.name} to ${role}`);
  await legacy.pool.query(DDL);
  await legacy.pool.query(`alter table items owner to ${role}`);
  await legacy.pool.query("insert into items select t, 1, 'x' from generate_series(1, 20) t");
  await shard.pool.query(DDL);
  worker = await startWorker(control.url, { log: (m) => logs.push(m) });
});

afterAll(async () => {
  await worker?.stop();
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
  await asAdmin(`drop role if exists ${role}`).catch(() => {});
});

describe("legacy refuses ordinary connections while the stream restarts", () => {
  it("CDC resumes once legacy accepts connections again", {
    timeout: 180_000,
  }, async () => {
    const url = new URL(legacy.url);
    url.username = role;
    url.password = password;
    const { planId, slotName } = await startMovementOn(actor, "refuses", url.toString(), [shard.url]);
    await waitForBackfill(planId);
    await waitForCatchUp(legacy.pool, slotName);

    // Legacy is full for the role: no new ordinary connection; every session of the role ends
    // (the stream's too), so the runner restarts and its pool has no idle connection to reuse.
    await legacy.pool.query(`alter role ${role} connection limit 0`);
    await legacy.pool.query("select pg_terminate_backend(pid) from pg_stat_activity where usename = $1", [
      role,
    ]);
    await waitFor(
      "a runner to be refused its legacy connection",
      async () => logs.some((l) => /too many connections for role/.test(l)),
      60_000,
    );
    await legacy.pool.query(`alter role ${role} connection limit -1`);

    // Legacy accepts connections again: writes after that must reach the shard.
    await legacy.pool.query("insert into items select t, 2, 'after' from generate_series(1, 20) t");
    try {
      await waitForCatchUp(legacy.pool, slotName, 60_000);
    } finally {
      const slot = await readSlotStatus(legacy.pool, slotName);
      const movement = await db().dataMovement.findUnique({ where: { planId } });
      console.log(`slot active: ${slot?.active}; movement: ${movement?.status} ${movement?.lastError}`);
    }
    const { rows } = await shard.pool.query<{ n: number }>(
      "select count(*)::int as n from items where id = 2",
    );
    expect(rows[0]?.n).toBe(20);
  });
});
