// Adversarial (h-cut): the cutover's flip unfreezes the tenant on the map in the same statement that
// names the new owner N, and N's fence opens one round trip later (docs/cutover.md step 8). A router
// that learns of the flip first sends the tenant's write to N, whose fence still refuses it as not
// the owner. The map will not move again (the flip was its last change), so a router that only
// waits for the map to move after a refusal held the write for the whole freeze budget and then
// failed it (StaleRouteError) although N opened a moment later. Here N's fence opens 300 ms after
// the write is sent: the write must land on N, well within the budget.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRouter, staticMapSource } from "../../../sdk";
import type { WireRoutingMap } from "../../../sdk/map-types";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { fenceFunctionSql, fenceTriggerSql, installFenceSchemaSql, upsertFenceStateSql } from "./fence-sql";

let legacy: TestDatabase;
let shard: TestDatabase;
const PLAN = "00000000-0000-0000-0000-0000000000a1";

beforeAll(async () => {
  legacy = await createTestDatabase("sfbm_legacy");
  shard = await createTestDatabase("sfbm_shard");
  await shard.pool.query("create table ev (tenant_id bigint not null, note text)");
  await shard.pool.query(installFenceSchemaSql());
  await shard.pool.query(upsertFenceStateSql(), [PLAN, "shard0", "shard-0", "legacy"]);
  await shard.pool.query(fenceFunctionSql("tenant_id"));
  await shard.pool.query(fenceTriggerSql("ev", "tenant_id", { key: "shard0", name: "shard-0" }, "legacy"));
}, 60_000);

afterAll(async () => {
  await legacy?.drop();
  await shard?.drop();
});

describe("a write sent to the new owner before its fence opened", () => {
  it("lands there once the fence opens, not after the freeze budget", async () => {
    // N's fence as the flip leaves it for a moment: the tenant still legacy's (frozen there).
    await shard.pool.query("insert into shardshift.tenant_fence values ('7', 'legacy', 'legacy', true, 4)");
    const db = (name: string, kind: "legacy" | "shard") => ({ id: name, name, kind });
    const map: WireRoutingMap = {
      planId: PLAN,
      version: 5,
      delta: false,
      since: null,
      freezeBudgetMs: 4_000,
      legacy: db("legacy", "legacy"),
      databases: [db("legacy", "legacy"), db("shard-0", "shard")],
      // The flip: owned by shard-0, not frozen, at version 5.
      tenants: [{ tenant: "7", owner: "shard-0", ownerId: "shard-0", frozen: false, version: 5 }],
    };
    const router = await createRouter({
      databases: { legacy: legacy.pool, "shard-0": shard.pool },
      map: staticMapSource(map),
    });
    try {
      const started = performance.now();
      const write = router.forTenant(7).query("insert into ev values (7, 'after the flip')");
      const opened = (async () => {
        await new Promise((r) => setTimeout(r, 300));
        // openNewOwner: N's row for the tenant, owned by N, unfrozen, at the flip's version.
        await shard.pool.query(
          "update shardshift.tenant_fence set owner_key = 'shard0', owner_name = 'shard-0', frozen = false, map_version = 5 where tenant_key = '7'",
        );
      })();
      const outcome = await write.then(
        () => "written",
        (e: Error) => `${e.name}: ${e.message}`,
      );
      await opened;
      const ms = performance.now() - started;
      expect(outcome).toBe("written");
      expect(ms).toBeLessThan(2_000);
      const { rows } = await shard.pool.query("select note from ev where tenant_id = 7");
      expect(rows).toEqual([{ note: "after the flip" }]);
    } finally {
      await router.close();
    }
  });
});
