// Adversarial (brk17): the lanes register a batch with the confirmer when it is HANDED to a lane,
// before it is applied. The confirmer then only compares each target's durable origin position with
// the batch's stamp. But PostgreSQL advances the origin on a stamped ABORT too: a lane whose stamped
// COMMIT fails after the stamp ran (it waited in PreCommit_Notify and was terminated) leaves the
// origin at the batch's stamp with none of its rows, until the settlement moves it back
// (origin-settlement.ts). Before the lanes, a batch reached the confirmer only after its apply
// succeeded, so that window confirmed nothing. With the lanes, any check in the window (the timer,
// or the final check of confirmer.stop() once the loop ended with the failure) sees the origin at
// the stamp and confirms the failed batch to the slot: the slot moves past rows no target holds,
// and no replay ever brings them back, whatever the settlement does afterwards.
//
// Made deterministic by a settlement that cannot run at once (the target refuses new sessions, as
// in break-stamp-xid-commit-wait.test.ts): the final check of confirmer.stop() confirmed 0/20
// (expected 16n, got 32n). Fixed: the confirmer counts a batch only once the lanes' transactions
// carrying it committed (durable-confirm.ts, the `committed` promise of replication-loop.ts).
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDatabase } from "../../embedded/embedded-server";
import { type CrashableServer, startCrashableServer } from "../../testing/crashable-server";
import { fakeReader } from "../../testing/fake-stream-reader";
import type { Statement } from "./apply";
import type { ChangeRouter } from "./change-router";
import { Confirmer } from "./confirmer";
import { settleOrigin } from "./origin-settlement";
import { runReplication } from "./replication-loop";
import type { SourceBatch, SourceTransaction } from "./stream-reader";
import { readOriginProgress, TargetApplier, TargetAppliers } from "./target-applier";

let server: CrashableServer;
let pool: pg.Pool;

beforeAll(async () => {
  server = await startCrashableServer("brk-lanes-confirm-abort", 45);
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

const ins = (id: number): Statement => ({
  name: "brk_lanes_ins",
  text: "insert into items (id, v) values ($1::bigint, 'x')",
  values: [String(id)],
});

function tx(id: number, endLsn: bigint): SourceTransaction {
  return {
    xid: String(id),
    commitLsn: endLsn - 1n,
    endLsn,
    commitTimeIso: new Date().toISOString(),
    changes: [],
    continued: false,
  };
}

/** One target; each source transaction inserts the row its xid names, unless the target holds it. */
const router = {
  route(transactions: SourceTransaction[], appliedUpTo: bigint[]) {
    return [transactions.filter((t) => t.endLsn > (appliedUpTo[0] ?? 0n)).map((t) => ins(Number(t.xid)))];
  },
} as unknown as ChangeRouter;

describe("lanes and the confirmer, when a stamped COMMIT aborts", () => {
  it("never confirm a batch whose stamped COMMIT aborted (the origin sat at its stamp)", async () => {
    const origin = "shardshift_brk_lanes_confirm_abort_t0";
    const target = await TargetApplier.open({
      url: server.url("app"),
      ordinal: 0,
      origin,
      statementTimeoutMs: 1500,
    });
    const appliers = new TargetAppliers([target]);
    // The confirmer's connection: open before the target refuses new sessions (origins are per server).
    const admin = new pg.Client({ connectionString: server.url("postgres") });
    admin.on("error", () => {});
    await admin.connect();
    await admin.query("set synchronous_commit = local");
    const blocker = new pg.Client({ connectionString: server.url("app") });
    blocker.on("error", () => {});
    await blocker.connect();
    const unblock = () =>
      admin.query(
        "select pg_terminate_backend(pid) from pg_stat_activity where query like 'begin; insert into side%'",
      );
    const confirmed: bigint[] = [];
    const confirmer = new Confirmer({
      durableOf: () => readOriginProgress(admin, origin),
      confirm: (lsn) => confirmed.push(lsn),
      periodMs: 50,
      log: () => {},
    });
    try {
      const pid = (await target.connection.query("select pg_backend_pid() as pid")).rows[0].pid;
      // Batch 1 commits and is confirmed.
      const first: SourceBatch = { transactions: [tx(1, 0x10n)], confirmableLsn: 0x10n };
      // Batch 2's COMMIT will wait for the NOTIFY queue's lock, held by a commit waiting for a standby.
      const second: SourceBatch = { transactions: [tx(2, 0x20n)], confirmableLsn: 0x20n };
      const { reader, feed } = fakeReader();
      const running = runReplication({ reader, router, appliers, confirmer }, { keepGoing: () => true });
      feed(first);
      running.catch(() => {});
      const deadline = Date.now() + 10_000;
      while (!confirmed.includes(0x10n)) {
        if (Date.now() > deadline) throw new Error("batch 1 was not confirmed");
        await new Promise((r) => setTimeout(r, 25));
      }
      await blocker.query("set synchronous_commit = on");
      const stuck = blocker
        .query("begin; insert into side values (1); notify items, 'blocker'; commit")
        .catch(() => {});
      await new Promise((r) => setTimeout(r, 300));
      feed(second);
      for (;;) {
        const { rows } = await admin.query("select wait_event_type from pg_stat_activity where pid = $1", [
          pid,
        ]);
        if (rows[0]?.wait_event_type === "Lock") break;
        if (Date.now() > deadline + 10_000) throw new Error("batch 2's COMMIT never waited");
        await new Promise((r) => setTimeout(r, 50));
      }
      // The settlement cannot connect (the target refuses new sessions), and the apply session is
      // ended inside its COMMIT: the transaction aborts, and the abort moves the origin to 0/20.
      await admin.query("alter database app allow_connections false");
      await admin.query("select pg_terminate_backend($1, 5000)", [pid]);
      // Whichever notices first ends the loop: the COMMIT's own error, or the session's end event.
      await expect(running).rejects.toThrow(/terminating connection|apply session to target 0 ended/);
      // As reverse-cdc.ts and forward-cdc.ts do once the loop ended: one last check.
      await confirmer.stop();
      // Batch 2's row is on no target: the slot must not be told it is done.
      const upTo = confirmed.at(-1) ?? 0n; // confirmations only ever rise
      expect(upTo).toBe(0x10n);
      await unblock();
      await stuck;
      await admin.query("alter database app allow_connections true");
      expect((await pool.query("select 1 from items where id = 2")).rowCount).toBe(0);
    } finally {
      await confirmer.stop();
      await admin.query("alter database app allow_connections true").catch(() => {});
      await unblock().catch(() => {});
      await settleOrigin(server.url("app"), origin).catch(() => {});
      await admin.end().catch(() => {});
      await blocker.end().catch(() => {});
      await appliers.close();
    }
  }, 60_000);
});
