// Adversarial: the cutover's drain during the window between a stamped apply transaction's failed
// COMMIT and its settlement. The batch carries a drain marker (the fence change's transaction) and a
// row; its COMMIT waits for the NOTIFY queue's lock (an ENABLE ALWAYS trigger notified; another
// transaction holds the lock while it waits for a synchronous standby that never comes) and a
// terminate ends it: the transaction aborts, and the abort moves the origin to the batch's stamp.
// The settlement cannot run yet (the target refuses new sessions), so the origin stays there.
//
// The drain used to read the origin alone: it said "drained" here, past the freeze position, with
// neither the row nor the fence change on the target — the cutover would have flipped the tenant
// and lost its last writes. It must wait instead, from what the target committed (the marker's row,
// drain-mark.ts), and say "drained" once the settlement moved the origin back and the batch was
// applied again.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDatabase } from "../../embedded/embedded-server";
import { type CrashableServer, startCrashableServer } from "../../testing/crashable-server";
import type { SourceSchema } from "../analysis/introspect";
import type { Statement } from "./apply";
import { ChangeRouter, type Route } from "./change-router";
import { waitForOriginProgress } from "./drain";
import { settlementPending } from "./origin-settlement";
import { dropSlotOrigins, readOriginProgress, TargetApplier } from "./target-applier";

let server: CrashableServer;
let pool: pg.Pool;

beforeAll(async () => {
  server = await startCrashableServer("brk-drain-aborted-stamp", 39);
  await ensureDatabase(server.url(), "app");
  pool = new pg.Pool({ connectionString: server.url("app") });
  pool.on("error", () => {});
  await pool.query("create table items (id bigint primary key, v text); create table side (x int)");
  await pool.query(`create function items_notify() returns trigger language plpgsql as $$
    begin perform pg_notify('items', new.id::text); return null; end $$`);
  await pool.query(
    "create trigger items_notify after insert on items for each row execute function items_notify()",
  );
  await pool.query("alter table items enable always trigger items_notify");
  await pool.query("alter system set synchronous_standby_names = 'nobody'");
  await pool.query("select pg_reload_conf()");
}, 120_000);

afterAll(async () => {
  await pool?.end();
  await server?.stop();
});

const stamp = (lsn: bigint) => ({ lsn, commitTimeIso: new Date().toISOString() });
const ins = (id: number): Statement => ({
  name: "brk_drain_ins",
  text: "insert into items (id, v) values ($1::bigint, 'x')",
  values: [String(id)],
});

/** One target that takes everything, and stamps it with a fence message's transaction. */
const route: Route = {
  version: 1,
  targetCount: 1,
  targetsOf: () => [0],
  everyTargetOf: () => [0],
  onMessage: () => true,
};
const schema: SourceSchema = { shardKeyColumn: "tenant_id", tables: [] };

/** The fence change's transaction (ending at `endLsn`) as the router sends it to a target at `held`. */
function fenceChange(endLsn: bigint, held: bigint): Statement[] {
  const message = {
    kind: "message",
    lsn: endLsn - 2n,
    prefix: "shardshift_fence",
    content: Buffer.from("{}"),
  };
  const out = new ChangeRouter(schema, route).route(
    [{ xid: "9", commitLsn: endLsn - 1n, endLsn, changes: [message as never] }],
    [held],
  );
  return out[0] ?? [];
}

/** Polls `read` until `done` holds or the deadline passes (then fails with the last value). */
async function until<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("the drain, while a stamped COMMIT that failed is not settled", () => {
  it("does not say drained from the aborted stamp; does once the batch is applied again", async () => {
    const origin = "shardshift_brk_drain_aborted_t0";
    const freeze = 0x18n;
    const open = () =>
      TargetApplier.open({ url: server.url("app"), ordinal: 0, origin, statementTimeoutMs: 1500 });
    const target = await open();
    // Origins are per server: the admin session watches from another database, which stays open.
    const admin = new pg.Client({ connectionString: server.url("postgres") });
    admin.on("error", () => {});
    await admin.connect();
    await admin.query("set synchronous_commit = local");
    // The drain's session on the target, open before the target refuses new ones.
    const drainer = new pg.Client({ connectionString: server.url("app") });
    drainer.on("error", () => {});
    await drainer.connect();
    // Its clean-up at the end must not wait for the standby that never comes.
    await drainer.query("set synchronous_commit = local");
    const blocker = new pg.Client({ connectionString: server.url("app") });
    blocker.on("error", () => {});
    await blocker.connect();
    const unblock = () =>
      admin.query(
        "select pg_terminate_backend(pid) from pg_stat_activity where query like 'begin; insert into side%'",
      );
    try {
      await target.apply([ins(800)], stamp(0x10n));
      await target.apply([ins(801)], stamp(0x11n));
      // The blocker's NOTIFY commit waits for the standby, holding the NOTIFY queue's lock.
      const blockerPid = (await blocker.query("select pg_backend_pid() as pid")).rows[0].pid;
      await blocker.query("set synchronous_commit = on");
      const stuck = blocker
        .query("begin; insert into side values (1); notify items, 'blocker'; commit")
        .catch(() => {});
      const waitOf = (pid: number) => async () =>
        (await admin.query("select wait_event from pg_stat_activity where pid = $1", [pid])).rows[0]
          ?.wait_event ?? null;
      await until(waitOf(blockerPid), (w) => w === "SyncRep", "the blocker's commit waiting for the standby");
      const pid = (await target.connection.query("select pg_backend_pid() as pid")).rows[0].pid;
      // The batch: a row of the tenant and the fence change's drain marker, stamped past the freeze.
      const applying = target.apply([ins(802), ...fenceChange(0x20n, 0x11n)], stamp(0x20n));
      applying.catch(() => {});
      await until(
        async () =>
          (await admin.query("select wait_event_type from pg_stat_activity where pid = $1", [pid])).rows[0]
            ?.wait_event_type ?? null,
        (w) => w === "Lock",
        "the apply's COMMIT waiting for the NOTIFY queue's lock",
      );
      // The settlement cannot connect: the failed transaction stays unsettled.
      await admin.query("alter database app allow_connections false");
      await admin.query("select pg_terminate_backend($1, 5000)", [pid]);
      await expect(applying).rejects.toThrow(/terminating connection/);
      expect(settlementPending(server.url("app"), origin)).toBe(true);
      expect(await readOriginProgress(drainer, origin)).toBe(0x20n);
      expect((await drainer.query("select 1 from items where id = 802")).rowCount).toBe(0);

      // The hole: the origin is past the freeze, the target holds none of the batch.
      const early = await waitForOriginProgress(drainer, origin, freeze, Date.now() + 500);
      expect(early.reached).toBe(false);
      // The aborted transaction left no mark: the drain knows from the target alone.
      expect(early).toMatchObject({ progress: 0x20n, marked: null });

      // Settled by the next open (the origin moved back), then the batch applied again.
      await admin.query("alter database app allow_connections true");
      await unblock();
      await stuck;
      const next = await open();
      try {
        expect(settlementPending(server.url("app"), origin)).toBe(false);
        expect(next.appliedUpTo).toBe(0x11n);
        const settled = await waitForOriginProgress(drainer, origin, freeze, Date.now());
        expect(settled.reached).toBe(false);
        await next.apply([ins(802), ...fenceChange(0x20n, next.appliedUpTo)], stamp(0x20n));
        const drained = await waitForOriginProgress(drainer, origin, freeze, Date.now() + 10_000);
        expect(drained).toEqual({ reached: true, progress: 0x20n, marked: 0x20n });
        expect((await drainer.query("select 1 from items where id = 802")).rowCount).toBe(1);
      } finally {
        await next.close();
      }
      // The movement ends: its origins and their marks go.
      await dropSlotOrigins(drainer, "brk_drain");
      const left = await drainer.query(
        "select (select count(*) from shardshift.drain_mark)::int as marks, pg_replication_origin_oid($1) as oid",
        [origin],
      );
      expect(left.rows[0]).toEqual({ marks: 0, oid: null });
    } finally {
      await admin.query("alter database app allow_connections true").catch(() => {});
      await unblock().catch(() => {});
      await admin.end().catch(() => {});
      await drainer.end().catch(() => {});
      await blocker.end().catch(() => {});
      await target.close();
    }
  }, 60_000);
});
