// Bounded memory for any transaction size: a worker whose heap is capped at 256 MB replicates one
// source transaction of 2,000,000 rows (held whole, its decoded changes alone would need several
// times that), applied in pieces inside one shard transaction and confirmed at its commit.
//
// The shard is a server of its own: that one shard transaction stays open for a minute or more, and
// on the shared server it held up every other test file's slot creation for as long.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDatabase } from "../../embedded/embedded-server";
import { systemActor } from "../../services/actor";
import { useControlPlane } from "../../testing/control-plane";
import { type CrashableServer, startCrashableServer } from "../../testing/crashable-server";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { startMovementOn, waitForBackfill, waitForCatchUp } from "../../testing/movement-fixture";
import { spawnWorker, type WorkerProcess } from "../../testing/worker-process";

const ROWS = 2_000_000;
let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shardServer: CrashableServer | undefined;
let shard: pg.Pool;
let worker: WorkerProcess | undefined;
const actor = systemActor("large-tx-test", "engineer@test");
const DDL =
  "create table items (tenant_id bigint not null, id bigint not null, v text, primary key (tenant_id, id))";

beforeAll(async () => {
  control = await useControlPlane("large_control");
  legacy = await createTestDatabase("large_legacy");
  shardServer = await startCrashableServer("large-tx-shard", 6);
  await ensureDatabase(shardServer.url(), "app");
  shard = new pg.Pool({ connectionString: shardServer.url("app"), max: 2 });
  await legacy.pool.query(DDL);
  await legacy.pool.query("insert into items select t, 0, 'seed' from generate_series(1, 10) t");
  await shard.query(DDL);
});

afterAll(async () => {
  await worker?.kill();
  await control?.drop();
  await legacy?.drop();
  await shard?.end();
  await shardServer?.stop();
});

describe("a source transaction of millions of rows", () => {
  it("is replicated by a worker capped at 256 MB of heap", { timeout: 600_000 }, async () => {
    worker = spawnWorker({ nodeOptions: ["--max-old-space-size=256"] });
    await worker.ready;
    const { planId, slotName } = await startMovementOn(actor, "large", legacy.url, [
      shardServer?.url("app") ?? "",
    ]);
    await waitForBackfill(planId, 120_000);

    await legacy.pool.query(
      `insert into items select 1 + g % 97, g, 'row ' || g || ' of one large transaction'
       from generate_series(1, ${ROWS}) g`,
    );
    await waitForCatchUp(legacy.pool, slotName, 480_000);
    expect(worker.alive()).toBe(true);
    expect(worker.output()).not.toMatch(/heap out of memory/i);
    const { rows } = await shard.query<{ n: number }>("select count(*)::int as n from items");
    expect(rows[0]?.n).toBe(ROWS + 10);
  });
});
