// A cancel runs on whichever worker's tick sees "cancelling" first. If another worker still streams
// the plan, its apply sessions hold the shards' replication origins and the drop fails ("in use by
// PID …"). The cancel used to finish anyway: the movement became "cancelled", nothing ever looked at
// its origins again, and they stayed on the shard servers for ever (a server allows only
// max_active_replication_origins, default 10). Now the cancel waits for a later tick, by when the
// holder (which stops its stream on seeing "cancelling") has let go.
//
// The holder here is a session of the test's own with the origin set up — what the other worker's
// apply session is — so the order does not depend on which worker ticks first.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { systemActor } from "../../services/actor";
import { controlDataMovement } from "../../services/movement/movement";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startMovementOn, waitForBackfill, waitForCatchUp } from "../../testing/movement-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
let worker: Worker | undefined;
const logs: string[] = [];
const actor = systemActor("cancel-origins", "engineer@test");
const DDL =
  "create table items (tenant_id bigint not null, id bigint not null, v text, primary key (tenant_id, id))";

beforeAll(async () => {
  control = await useControlPlane("cancel_origins_control");
  legacy = await createTestDatabase("cancel_origins_legacy");
  shard = await createTestDatabase("cancel_origins_shard");
  await legacy.pool.query(DDL);
  await shard.pool.query(DDL);
  await legacy.pool.query("insert into items select t, 1, 'x' from generate_series(1, 20) t");
});

afterAll(async () => {
  await worker?.stop();
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

const originsOf = async (slotName: string) =>
  (
    await shard.pool.query<{ roname: string }>(
      "select roname from pg_replication_origin where left(roname, length($1)) = $1",
      [`shardshift_${slotName}_`],
    )
  ).rows.map((r) => r.roname);

describe("cancel while another worker's stream holds the shards' origins", () => {
  it("waits for the holder and then drops the origins (none left on the shard)", {
    timeout: 180_000,
  }, async () => {
    worker = await startWorker(control.url, { log: () => {} });
    const { planId, slotName } = await startMovementOn(actor, "cancel-origins", legacy.url, [shard.url]);
    await waitForBackfill(planId);
    await waitForCatchUp(legacy.pool, slotName);
    await worker.stop();
    worker = undefined;
    const [origin] = await originsOf(slotName);
    expect(origin).toBeDefined();

    // The other worker's stream: an apply session holding the origin.
    const holder = new pg.Client({ connectionString: shard.url });
    await holder.connect();
    await holder.query("select pg_replication_origin_session_setup($1)", [origin]);
    try {
      await controlDataMovement(actor, { planId, action: "cancel", reason: "test over" });
      worker = await startWorker(control.url, { log: (m) => logs.push(m) });
      await waitFor(
        "a tick to try the origins' drop",
        async () => logs.some((l) => l.includes("dropping the apply origins")),
        60_000,
      );
    } finally {
      // The holder stops (as the streaming worker does on seeing "cancelling").
      await holder.end();
    }
    await waitFor(
      "the cancel to finish",
      async () => (await db().dataMovement.findUnique({ where: { planId } }))?.status === "cancelled",
      60_000,
    );
    expect(await originsOf(slotName)).toEqual([]);
  });
});
