// "Empty the shard tables first" must empty the shard the identities were checked for. The start
// checked each database's identity on one connection (plan-databases.ts), then opened new ones by
// URL to prepare and empty the shards: a host name that pointed elsewhere by then (a DNS change, a
// failover, a moved alias; here the registration's stored URL is rewritten while the start waits
// for its claim) had the start TRUNCATE whatever answered — legacy itself. Now the connection that
// empties a shard is asked who it is first.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { loadDemoDataset } from "../../demo/dataset";
import { encryptSecret } from "../../security/secrets";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import { createCaller } from "../../trpc/root";
import { systemActor } from "../actor";

const actor = systemActor("identity-at-truncate", "engineer@test");
let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;

beforeAll(async () => {
  control = await useControlPlane("ident_trunc_cp");
  legacy = await createTestDatabase("ident_trunc_legacy");
  shard = await createTestDatabase("ident_trunc_shard");
  await loadDemoDataset(legacy.pool, { tenants: 5, rows: 200, seed: 9 });
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
});

async function legacyRows(): Promise<number> {
  const { rows: tables } = await legacy.pool.query<{ t: string }>(
    "select format('%I.%I', schemaname, tablename) as t from pg_tables where schemaname = 'public'",
  );
  let total = 0;
  for (const { t } of tables) {
    const { rows } = await legacy.pool.query<{ n: number }>(`select count(*)::int as n from ${t}`);
    total += rows[0]?.n ?? 0;
  }
  return total;
}

describe("a shard whose name points elsewhere by the time it is emptied", () => {
  it("is refused on the connection that would empty it; legacy keeps every row", async () => {
    const plan = await planAtTwoWayCdc(actor, "identity-at-truncate", legacy.url, [shard.url]);
    const before = await legacyRows();
    expect(before).toBeGreaterThan(0);
    const shardRow = await db().planShard.findFirstOrThrow({ where: { planId: plan.id } });

    const holder = await control.pool.connect();
    let started: Promise<unknown>;
    let settled = false;
    try {
      // Hold the start at its claim (after the identity checks).
      await holder.query("select pg_advisory_lock(7363500, 0)");
      started = createCaller({
        user: { id: "operator-1", email: "operator@test", name: "Oskar Operator", role: "operator" },
        requestId: "start",
      })
        .movement.start({ planId: plan.id, reason: "start it now", resetShards: true })
        .then(
          () => null,
          (error: unknown) => error,
        )
        .finally(() => {
          settled = true;
        });
      const deadline = Date.now() + 60_000;
      for (;;) {
        const { rows } = await control.pool.query<{ n: number }>(
          "select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted and classid = 7363500 and objid = 0",
        );
        if ((rows[0]?.n ?? 0) > 0) break;
        if (settled) throw new Error(`the start ended before its claim: ${String(await started)}`);
        if (Date.now() > deadline) throw new Error("the start never reached its claim");
        await new Promise((r) => setTimeout(r, 50));
      }
      // The shard's name now reaches legacy.
      await db().database.update({
        where: { id: shardRow.databaseId },
        data: { urlCiphertext: encryptSecret(legacy.url, control.secretKey) },
      });
    } finally {
      await holder.query("select pg_advisory_unlock_all()");
      holder.release();
    }
    const error = await started;
    expect(await legacyRows()).toBe(before);
    expect(error).toMatchObject({ code: "CONFLICT" });
    expect((error as Error).message).toMatch(/now answers as/);
  }, 120_000);
});
