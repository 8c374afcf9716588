// A diagnostic, not a check (it asserts nothing and runs only with SHARDSHIFT_APPLY_LATENCY=1): the
// round trip of a one-row apply transaction on one session, three ways interleaved so the machine's
// load hits them alike — unstamped (one statement), stamped as BEGIN + stamp / statement / COMMIT
// (three Syncs: how apply was sent before), and stamped under one Sync (one-sync-transaction.ts).
//   SHARDSHIFT_APPLY_LATENCY=1 npx vitest run server/engine/cdc/apply-latency.test.ts
import pg from "pg";
import { afterAll, beforeAll, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { applySessionSql } from "./apply";
import { originSessionSetupSql, originXactSetupSql } from "./apply-origin";
import { runInOneSync } from "./one-sync-transaction";

const enabled = process.env.SHARDSHIFT_APPLY_LATENCY === "1";
let database: TestDatabase;
let client: pg.Client;
beforeAll(async () => {
  if (!enabled) return;
  database = await createTestDatabase("lat");
  await database.pool.query(
    "create table t (tenant_id bigint, id bigint, sent_at timestamptz, primary key (tenant_id, id))",
  );
  client = new pg.Client({ connectionString: database.url, pipeline: true } as pg.ClientConfig);
  await client.connect();
  await client.query(applySessionSql());
  await client.query(originSessionSetupSql("lat_origin_x"));
});
afterAll(async () => {
  if (!enabled) return;
  await client.end();
  await database.pool.query("select pg_replication_origin_drop('lat_origin_x')").catch(() => {});
  await database.drop();
});
const up = {
  name: "lat_up",
  text: "insert into t values ($1::bigint, $2::bigint, now()) on conflict (tenant_id, id) do update set sent_at = excluded.sent_at",
};
it.runIf(enabled)(
  "one-row apply round trip: unstamped, three Syncs, one Sync",
  { timeout: 300_000 },
  async () => {
    const times: Record<string, number[]> = { lone: [], three: [], onesync: [] };
    let lsn = 1000n;
    for (let i = 0; i < 6000; i++) {
      const which = ["lone", "three", "onesync"][i % 3] as string;
      const values = [String(i % 100), String(i)];
      lsn += 10n;
      const t0 = performance.now();
      if (which === "lone") await client.query({ ...up, values });
      else if (which === "three") {
        const stamp = originXactSetupSql(lsn, new Date().toISOString());
        await Promise.all([
          client.query(`begin isolation level read committed; ${stamp}`),
          client.query({ ...up, values }),
          client.query("commit"),
        ]);
      } else {
        await runInOneSync(client, [
          {
            name: "lat_stamp",
            text: "select pg_replication_origin_xact_setup($1::pg_lsn, $2::timestamptz)",
            values: [`0/${lsn.toString(16)}`, new Date().toISOString()],
          },
          { ...up, values },
        ]);
      }
      times[which]?.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 1));
    }
    for (const [k, v] of Object.entries(times)) {
      v.sort((a, b) => a - b);
      const q = (p: number) => v[Math.min(v.length - 1, Math.floor(p * v.length))]?.toFixed(3);
      console.log(`apply round trip, ${k}: p50 ${q(0.5)} p90 ${q(0.9)} p99 ${q(0.99)} max ${q(1)}`);
    }
  },
);
