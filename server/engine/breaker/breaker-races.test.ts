// Adversarial checks of the rollback (break pass), on one plan with tenants cut over to two shards.
//
// 1. A route of the set changes between the drain and the flip — an
// operator unfreezes a tenant on its shard (routing.change), the map row's version moves on — and
// the rollback must not flip it. The drain carried that shard's writes only up to the fence
// position; once the tenant is unfrozen on its shard the shard takes writes again, and a flip
// would hand the tenant to legacy without them (they reach legacy, if ever, after legacy is open
// for its writes: acknowledged writes lost or reordered). Before the fix the flip re-read the
// routes and wrote "owner legacy" from whatever it found (its SS101 retry did the same).
//
// The operator's change is made by a trigger on the control plane at the instant the trip records
// its "drained" step (deterministic: the flip reads the routes right after). The whole set must
// stay on its shards, the trip failed with the reason, nothing flipped.
//
// 2. The session holding the trip's lock dies (the server ended it: idle_session_timeout, a proxy,
// pg_terminate_backend) while its worker lives and drives the trip. Another worker may take the
// trip over from then on, so the run must take no further step: before the fix it went on, its
// flip failed on the dead session and it undid and GAVE UP the trip (failed, every tenant left on
// its shard) — and with a second worker driving the trip meanwhile, its undo unfroze the tenants
// that worker was draining. Now it stops, the trip is taken over (undone before the flip, driven
// again) and rolls back. Also: re-arm after a failed trip, then trip the same set again.
//
// 3. A shard judged DOWN when the rollback is prepared (no connection accepted) answers again before
// the flip. Its tenants were frozen on the map only — never fenced there, never drained — on the
// premise that their owner cannot be written. Once it answers, routers that have not read the map
// yet write there again until the fence watch reaches it; positions its last probe recorded say
// nothing of those writes. Before the fix its tenants flipped on the old probe's positions; now they
// are held (frozen, the shard's) and re-arming rolls them back normally.
//
// 4. (Held, no fix needed.) Re-arming the held trip rolls them back; then cutovers of two tenants
// are requested and the breaker is tripped for every tenant at once: each cutover is aborted before
// it ran or waited for, and every tenant ends on legacy, unfrozen, none in flight.
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { systemActor } from "../../services/actor";
import { rearmBreaker, tripBreaker } from "../../services/breaker/breaker";
import { startDataMovement } from "../../services/movement/movement";
import { requestCutover } from "../../services/routing/cutover";
import { closeRoutingMapNotifier } from "../../services/routing/map-notifier";
import { useControlPlane } from "../../testing/control-plane";
import { waitForCutoverEnd } from "../../testing/cutover-fixture";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitForBackfill } from "../../testing/movement-fixture";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { waitFor } from "../../testing/worker-process";
import { startWorker, type Worker } from "../../worker";
import { flushLsnMetric, reverseConfirmedMetric } from "../gates/shard-probe";

const CUT = ["1", "2", "3"];
const MOVED = "1";

let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shards: TestDatabase[];
let worker: Worker | null = null;
let planId = "";
const workerLog: string[] = [];
/** Called with each line the worker logs (synchronously: the worker waits meanwhile). */
let onWorkerLine: (line: string) => void = () => {};
const actor = { ...systemActor("breaker-route-moved", "operator@test"), role: "operator" as const };

beforeAll(async () => {
  control = await useControlPlane("brm_control");
  legacy = await createTestDatabase("brm_legacy");
  shards = [await createTestDatabase("brm_shard0"), await createTestDatabase("brm_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: 6, rows: 600, seed: 7 });
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await closeRoutingMapNotifier();
  await control?.drop();
  await legacy?.drop();
  for (const s of shards ?? []) await s.drop();
});

describe("a route of the set moved between the drain and the flip", () => {
  it("is not flipped: the whole set stays on its shards and the trip fails, naming it", {
    timeout: 240_000,
  }, async () => {
    const plan = await planAtTwoWayCdc(
      actor,
      "route moved",
      legacy.url,
      shards.map((s) => s.url),
    );
    await db().plan.update({
      where: { id: plan.id },
      data: { settings: { ...(plan.settings as object), freezeBudgetMs: 10_000 } },
    });
    await startDataMovement(actor, { planId: plan.id, reason: "go", resetShards: true });
    planId = plan.id;
    worker = await startWorker(control.url, {
      autoTrip: false,
      log: (m) => {
        workerLog.push(m);
        onWorkerLine(m);
      },
    });
    await waitForBackfill(plan.id, 120_000);
    await waitFor("forward replication to report its lag", () =>
      db().metricSample.findFirst({ where: { planId: plan.id, name: "cdc.lag_ms" } }),
    );
    for (const tenant of CUT) {
      for (let attempt = 1; ; attempt++) {
        const { cutoverId } = await requestCutover(actor, {
          planId: plan.id,
          tenantKey: tenant,
          reason: "setup",
          budgetMs: 10_000,
        });
        const end = await waitForCutoverEnd(cutoverId, 60_000);
        if (end.status === "done") break;
        if (attempt >= 3) throw new Error(`tenant ${tenant} did not cut over: ${end.error}`);
      }
    }
    const before = new Map(
      (await db().tenantRoute.findMany({ where: { planId: plan.id, tenantKey: { in: CUT } } })).map((r) => [
        r.tenantKey,
        r.ownerDatabaseId,
      ]),
    );
    for (const t of CUT) expect(before.get(t)).not.toBeNull();

    // The operator: at the trip's "drained" step, tenant MOVED is unfrozen on its shard (a new map
    // version, as routing.change writes it).
    await db().$executeRawUnsafe(`
      create function brm_operator() returns trigger language plpgsql as $$
      declare v bigint;
      begin
        if new.steps @> '[{"status":"drained"}]' and not old.steps @> '[{"status":"drained"}]' then
          update routing_map set version = version + 1 where plan_id = new.plan_id returning version into v;
          update tenant_route set frozen = false, frozen_at = null, version = v
           where plan_id = new.plan_id and tenant_key = '${MOVED}';
        end if;
        return new;
      end $$`);
    await db().$executeRawUnsafe(
      "create trigger brm_operator after update on breaker_trip for each row execute function brm_operator()",
    );

    const { tripId } = await tripBreaker(actor, {
      planId: plan.id,
      scope: { kind: "tenants", tenants: CUT },
      reason: "route moved test",
    });
    const ended = await waitFor(
      "the rollback to end",
      async () => {
        const r = await db().breakerTrip.findUniqueOrThrow({ where: { id: tripId } });
        return r.status === "rolled_back" || r.status === "failed" ? r : null;
      },
      120_000,
    );
    const steps = (ended.steps as { status: string }[]).map((s) => s.status);
    expect(steps).toContain("drained"); // the operator's change did happen after the drain
    const after = await db().tenantRoute.findMany({ where: { planId: plan.id, tenantKey: { in: CUT } } });
    const owners = new Map(after.map((r) => [r.tenantKey, r]));
    // Never flipped: the tenant unfrozen on its shard after the drain is still its shard's.
    expect(owners.get(MOVED)?.ownerDatabaseId).toBe(before.get(MOVED));
    // Either the whole set flipped or none of it: none, all unfrozen on their shards.
    for (const t of CUT) {
      expect(owners.get(t)?.ownerDatabaseId).toBe(before.get(t));
      expect(owners.get(t)?.frozen).toBe(false);
    }
    expect(ended.status).toBe("failed");
    expect(ended.flipVersion).toBeNull();
    expect(ended.error).toContain(`tenant ${MOVED}`);
  });

  it("a run whose lock session died stops; the trip is taken over and rolls back", {
    timeout: 180_000,
  }, async () => {
    expect(planId).not.toBe("");
    await db().$executeRawUnsafe("drop trigger brm_operator on breaker_trip");
    const admin = { ...actor, email: "admin@test", role: "admin" as const };
    await rearmBreaker(admin, { planId, reason: "operator's change understood" });
    const before = await db().tenantRoute.findMany({ where: { planId, tenantKey: { in: CUT } } });
    for (const r of before) expect(r.ownerDatabaseId).not.toBeNull();

    // At the freeze (logged once the set is frozen on the map), the server ends the session that
    // holds the trip's lock; the worker process itself lives on.
    let killed = 0;
    onWorkerLine = (line) => {
      if (killed > 0 || !/\] froze \d+ tenants/.test(line)) return;
      killed = Number(
        execFileSync(
          process.execPath,
          [
            "-e",
            `const pg = require("pg");
             const c = new pg.Client({ connectionString: process.env.BRM_URL });
             c.connect()
               .then(() => c.query("select pg_terminate_backend(pid) as ok, pid from pg_locks where locktype = 'advisory' and classid = 7363900 and objsubid = 2 and granted"))
               .then((r) => { process.stdout.write(String(r.rows.length)); return c.end(); });`,
          ],
          { env: { ...process.env, BRM_URL: control.url }, encoding: "utf8" },
        ),
      );
    };
    const { tripId } = await tripBreaker(actor, {
      planId,
      scope: { kind: "tenants", tenants: CUT },
      reason: "lock session dies",
    });
    const ended = await waitFor(
      "the rollback to end",
      async () => {
        const r = await db().breakerTrip.findUniqueOrThrow({ where: { id: tripId } });
        return r.status === "rolled_back" || r.status === "failed" ? r : null;
      },
      120_000,
    );
    onWorkerLine = () => {};
    expect(killed).toBe(1);
    const steps = ended.steps as { status: string; note?: string }[];
    // The takeover undid the first run before the flip (back to tripped, with why), then one flip.
    expect(steps.some((s) => s.status === "tripped" && s.note?.includes("before the flip"))).toBe(true);
    expect(steps.filter((s) => s.status === "flipped")).toHaveLength(1);
    expect({ status: ended.status, error: ended.error }).toEqual({ status: "rolled_back", error: null });
    // Driven twice: the first run stopped at the lost lock, the takeover undid it, the second flipped.
    expect(ended.attempts).toBe(2);
    const after = await db().tenantRoute.findMany({ where: { planId, tenantKey: { in: CUT } } });
    for (const r of after)
      expect({ tenant: r.tenantKey, owner: r.ownerDatabaseId, frozen: r.frozen }).toEqual({
        tenant: r.tenantKey,
        owner: null,
        frozen: false,
      });
    expect(workerLog.some((l) => l.includes("the trip's lock was lost"))).toBe(true);
  });

  it("a shard down when prepared that answers again before the flip: its tenants are held, not flipped", {
    timeout: 180_000,
  }, async () => {
    const admin = { ...actor, email: "admin@test", role: "admin" as const };
    await rearmBreaker(admin, { planId, reason: "again" });
    for (const tenant of CUT) {
      for (let attempt = 1; ; attempt++) {
        const { cutoverId } = await requestCutover(actor, {
          planId,
          tenantKey: tenant,
          reason: "again",
          budgetMs: 10_000,
        });
        const end = await waitForCutoverEnd(cutoverId, 60_000);
        if (end.status === "done") break;
        if (attempt >= 3) throw new Error(`tenant ${tenant} did not cut over: ${end.error}`);
      }
    }
    const owner = (await db().tenantRoute.findFirstOrThrow({ where: { planId, tenantKey: MOVED } }))
      .ownerDatabaseId as string;
    const { ordinal } = await db().planShard.findFirstOrThrow({ where: { planId, databaseId: owner } });
    const down = shards[ordinal] as TestDatabase;
    const onIt = (await db().tenantRoute.findMany({ where: { planId, ownerDatabaseId: owner } })).map(
      (r) => r.tenantKey,
    );
    // Its last probe's positions say legacy holds everything it had flushed (the newest samples).
    const at = new Date(Date.now() + 3_600_000);
    await db().metricSample.createMany({
      data: [
        { planId, name: flushLsnMetric(ordinal), value: 1_000, at },
        { planId, name: reverseConfirmedMetric(ordinal), value: 2_000, at },
      ],
    });
    // Down: the shard accepts no connection; every session it had is ended.
    const allow = (on: boolean) =>
      `alter database ${down.name} allow_connections ${on};` +
      (on ? "" : ` select pg_terminate_backend(pid) from pg_stat_activity where datname = '${down.name}';`);
    await legacy.pool.query(allow(false));
    let back = false;
    onWorkerLine = (line) => {
      if (back || !/ down: its tenants are frozen on the map/.test(line)) return;
      back = true;
      // Back up, synchronously (the worker waits): before the set is frozen and judged.
      execFileSync(
        process.execPath,
        [
          "-e",
          `const pg = require("pg");
           const c = new pg.Client({ connectionString: process.env.BRM_URL });
           c.connect().then(() => c.query(process.env.BRM_SQL)).then(() => c.end());`,
        ],
        { env: { ...process.env, BRM_URL: legacy.url, BRM_SQL: allow(true) } },
      );
    };
    try {
      const { tripId } = await tripBreaker(actor, {
        planId,
        scope: { kind: "shard", databaseId: owner },
        reason: "shard back before the flip",
      });
      const ended = await waitFor(
        "the rollback to end",
        async () => {
          const r = await db().breakerTrip.findUniqueOrThrow({ where: { id: tripId } });
          return r.status === "rolled_back" || r.status === "failed" ? r : null;
        },
        120_000,
      );
      expect(back).toBe(true);
      const routes = await db().tenantRoute.findMany({ where: { planId, tenantKey: { in: onIt } } });
      // Held: still the shard's, frozen — not flipped on the positions of a probe before it came back.
      for (const r of routes)
        expect({ tenant: r.tenantKey, owner: r.ownerDatabaseId, frozen: r.frozen }).toEqual({
          tenant: r.tenantKey,
          owner,
          frozen: true,
        });
      expect(ended.status).toBe("failed");
      expect(ended.flipVersion).toBeNull();
      expect(ended.error).toContain("answers again");
    } finally {
      onWorkerLine = () => {};
      await legacy.pool.query(allow(true));
    }
  });

  it("re-arming a held trip finishes it; a trip racing cutovers of its tenants waits or aborts them", {
    timeout: 180_000,
  }, async () => {
    const admin = { ...actor, email: "admin@test", role: "admin" as const };
    const untilEnded = (id: string) =>
      waitFor(
        "the rollback to end",
        async () => {
          const r = await db().breakerTrip.findUniqueOrThrow({ where: { id } });
          return r.status === "rolled_back" || r.status === "failed" ? r : null;
        },
        120_000,
      );
    const { heldTripId } = await rearmBreaker(admin, { planId, reason: "the shard is back" });
    expect(heldTripId).not.toBeNull();
    const held = await untilEnded(heldTripId as string);
    expect({ status: held.status, error: held.error }).toEqual({ status: "rolled_back", error: null });
    await rearmBreaker(admin, { planId, reason: "all back" });

    // Two cutovers to the shards requested, and at once a trip of every tenant on the shards.
    const racing = ["4", "5"];
    const cutovers = await Promise.all(
      racing.map((tenantKey) =>
        requestCutover(actor, { planId, tenantKey, reason: "race", budgetMs: 10_000 }),
      ),
    );
    const { tripId } = await tripBreaker(actor, {
      planId,
      scope: { kind: "all" },
      reason: "race the cutovers",
    });
    const ended = await untilEnded(tripId);
    expect({ status: ended.status, error: ended.error }).toEqual({ status: "rolled_back", error: null });
    const rows = await db().tenantCutover.findMany({
      where: { id: { in: cutovers.map((c) => c.cutoverId) } },
      select: { tenantKey: true, status: true },
    });
    for (const r of rows) expect(["done", "aborted"]).toContain(r.status);
    const routes = await db().tenantRoute.findMany({ where: { planId } });
    for (const r of routes)
      expect({ tenant: r.tenantKey, owner: r.ownerDatabaseId, frozen: r.frozen }).toEqual({
        tenant: r.tenantKey,
        owner: null,
        frozen: false,
      });
  });
});
