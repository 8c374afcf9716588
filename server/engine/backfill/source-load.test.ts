// The backfill's load query: read as one number in a read-only transaction, refused with the reason
// when it cannot work (on save, not mid-backfill), and a busy answer makes a running slice back off.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { AppError } from "../../errors";
import { systemActor } from "../../services/actor";
import { startDataMovement } from "../../services/movement/movement";
import { getPlan, updatePlanSettings } from "../../services/plans/plans";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { runBackfillSlice } from "./run-slice";
import { LoadQueryError, readLoadQuery } from "./source-load";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
const actor = systemActor("load-test", "engineer@test");

beforeAll(async () => {
  control = await useControlPlane("load_control");
  legacy = await createTestDatabase("load_legacy");
  shard = await createTestDatabase("load_shard");
  await loadDemoDataset(legacy.pool, { tenants: 100, rows: 8_000, seed: 4 });
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

describe("the load query", () => {
  it("returns one number, and says what is wrong otherwise", async () => {
    const client = await legacy.pool.connect();
    try {
      expect(await readLoadQuery(client, "select count(*) from tenants")).toBe(100);
      expect(await readLoadQuery(client, "select 2.5::numeric")).toBe(2.5);
      expect(await readLoadQuery(client, "select 3;\n")).toBe(3);
      const refusal = (query: string) =>
        readLoadQuery(client, query).then(
          () => "accepted",
          (e: Error) => e,
        );
      const cases: [string, RegExp][] = [
        ["select 1, 2", /one row with one number; it returned 1 row of 2 columns/],
        ["select 1 from tenants limit 2", /it returned several rows of 1 column/],
        ["select 'busy'", /must return a number; it returned text that is not a number\.$/],
        ["select null::int", /must return a number; it returned null/],
        ["select 1; select 2", /failed on legacy: syntax_error \(SQLSTATE 42601\) at character 9\.$/],
        ["select count(*) from no_such_table", /failed on legacy: undefined_table \(SQLSTATE 42P01\)/],
        ["select generate_series(1, 100000000)", /it returned several rows/], // read back: at most two
        [
          "with gone as (delete from events returning 1) select count(*) from gone",
          /failed on legacy: feature_not_supported \(SQLSTATE 0A000\)/,
        ],
        ["select pg_sleep(3)::text::int", /longer than 2 s on legacy and was cancelled/],
      ];
      for (const [query, message] of cases) {
        const outcome = await refusal(query);
        expect(outcome, query).toBeInstanceOf(LoadQueryError);
        expect((outcome as Error).message, query).toMatch(message);
      }
      // It runs as legacy's user and may read any table that user can: what it read is never
      // echoed, neither as its result nor through the server's error text (which quotes values).
      const { rows } = await legacy.pool.query<{ name: string }>(
        "select name from tenants order by tenant_id limit 1",
      );
      const secret = rows[0]?.name ?? "";
      expect(secret.length).toBeGreaterThan(3);
      for (const [query, message] of [
        ["select name from tenants order by tenant_id limit 1", /returned text that is not a number/],
        [
          "select name::int from tenants order by tenant_id limit 1",
          /invalid_text_representation \(SQLSTATE 22P02\)/,
        ],
      ] as const) {
        const outcome = await refusal(query);
        expect((outcome as Error).message, query).toMatch(message);
        expect((outcome as Error).message, query).not.toContain(secret);
      }
      // The connection is usable after every refusal (no transaction left open), and nothing was deleted.
      expect(await readLoadQuery(client, "select count(*) from events")).toBeGreaterThan(0);
    } finally {
      client.release();
    }
  });

  it("is refused on save when it cannot work, and backs a running slice off when busy", {
    timeout: 60_000,
  }, async () => {
    const plan = await planAtTwoWayCdc(actor, "load", legacy.url, [shard.url]);
    const save = (sourceLoadQuery: string, sourceLoadThreshold = 5) =>
      getPlan(plan.id).then((p) =>
        updatePlanSettings(actor, {
          planId: plan.id,
          expectedVersion: p.version,
          settings: { ...p.settings, backfillRowsPerSecond: 400, sourceLoadQuery, sourceLoadThreshold },
        }),
      );
    const refused = await save("select relname from pg_class").then(
      () => null,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(AppError);
    expect((refused as AppError).field).toBe("settings.sourceLoadQuery");
    expect((refused as AppError).message).toMatch(/one row with one number/);
    expect((await getPlan(plan.id)).settings.sourceLoadQuery).toBe("");

    // Only an admin (or the system) sets it: it runs as legacy's registered user.
    const operator = { id: null, email: "op@test", role: "operator" as const, requestId: "op" };
    const current = await getPlan(plan.id);
    const forbidden = await updatePlanSettings(operator, {
      planId: plan.id,
      expectedVersion: current.version,
      settings: { ...current.settings, sourceLoadQuery: "select 1" },
    }).then(
      () => null,
      (e: unknown) => e,
    );
    expect((forbidden as AppError).code).toBe("FORBIDDEN");
    expect((forbidden as AppError).field).toBe("settings.sourceLoadQuery");

    await save("select count(*) from tenants"); // 100 > 5: legacy counts as busy
    await startDataMovement(actor, { planId: plan.id, reason: "go" });
    const task = await db().backfillTask.findFirstOrThrow({
      where: { planId: plan.id, tableName: '"public"."events"' },
    });
    expect(await runBackfillSlice(task.id, 2_500)).toBe("more");
    const events = await db().engineEvent.findMany({ where: { planId: plan.id, source: "backfill" } });
    expect(events.map((e) => e.message)).toContain(
      'Backing off "public"."events": the load query returned 100 (back-off above 5).',
    );
  });
});
