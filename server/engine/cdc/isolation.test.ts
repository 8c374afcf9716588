// CDC runs on an event loop of its own: while the worker's main event loop is blocked (a slow
// Prisma query, a parity pass, a backfill slice hashing rows), changes still reach the shards.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { systemActor } from "../../services/actor";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startMovementOn, waitForBackfill, waitForCatchUp } from "../../testing/movement-fixture";
import { startWorker, type Worker } from "../../worker";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
let worker: Worker;
const actor = systemActor("isolation-test", "engineer@test");
const DDL =
  "create table items (tenant_id bigint not null, id bigint not null, v text, primary key (tenant_id, id))";

beforeAll(async () => {
  control = await useControlPlane("iso_control");
  legacy = await createTestDatabase("iso_legacy");
  shard = await createTestDatabase("iso_shard");
  await legacy.pool.query(DDL);
  await legacy.pool.query("insert into items select t, 1, 'x' from generate_series(1, 10) t");
  await shard.pool.query(DDL);
  // Stamps when CDC's write lands (ENABLE ALWAYS: apply sessions run as replicas).
  await shard.pool.query(`
    create table applied (id bigint, at timestamptz);
    create function stamp() returns trigger language plpgsql as $$
      begin insert into applied values (new.id, clock_timestamp()); return new; end $$;
    create trigger stamp after insert on items for each row execute function stamp();
    alter table items enable always trigger stamp;`);
  worker = await startWorker(control.url, { log: () => {} });
});

afterAll(async () => {
  await worker?.stop();
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

describe("CDC isolated from the worker's event loop", () => {
  it("applies a change while the main event loop is blocked", { timeout: 120_000 }, async () => {
    const { planId, slotName } = await startMovementOn(actor, "isolation", legacy.url, [shard.url]);
    await waitForBackfill(planId);
    await waitForCatchUp(legacy.pool, slotName);

    const writer = new pg.Client({ connectionString: legacy.url });
    await writer.connect();
    await writer.query("insert into items values (1, 2, 'during the block')");
    await writer.end();
    // Block this process's main event loop (where the supervisor, pg-boss and parity run) for 10 s:
    // long enough that a whole run's load on 2 cores (this loop holds one) cannot delay the thread
    // past it — with 4 s, one whole-suite run saw the change land 0.8 s after the block.
    const blockedUntil = Date.now() + 10_000;
    while (Date.now() < blockedUntil) {
      /* busy: nothing on this event loop runs */
    }
    await waitForCatchUp(legacy.pool, slotName);
    const { rows } = await shard.pool.query<{ at: Date }>("select at from applied where id = 2");
    expect(rows).toHaveLength(1);
    expect(rows[0]?.at.getTime()).toBeLessThan(blockedUntil);
  });
});
