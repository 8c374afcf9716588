// Adversarial (break16b): a stamped one-message transaction whose COMMIT fails after the stamp ran,
// for a reason `set constraints all immediate` cannot run early: COMMIT waits for the NOTIFY queue's
// lock (the batch notifies: an ENABLE ALWAYS trigger), held by another transaction of the target
// that is waiting for a synchronous standby, and the apply's statement timeout ends the wait.
// PostgreSQL advances the origin on a stamped abort: does the origin move past rows never committed?
//
// It did, on every path: the statement timeout does not end that wait (PostgreSQL disarms it before
// COMMIT's work); a pg_terminate_backend of the hung apply session does, and the aborted, stamped
// transaction left the origin at the batch's stamp with none of its rows (seen: origin 0/20, row
// absent; it held 0/11 resp. 0/10). The next runner would have skipped the batch. No ordering of
// the closing message avoids it: the wait is inside COMMIT (PreCommit_Notify), after the stamp.
//
// Fixed by settling (origin-settlement.ts): the stamp's row names its transaction as it runs
// (stamped-commit.ts), and the applier, before its apply rejects, ends the session and moves the
// origin back if that transaction aborted. Covered here: the one-message, fallback and sequential
// (re-read) paths and commitLarge, each ended by a terminate (the session gone), and a cancel,
// which fails the COMMIT with the session alive. The next runner's open finds the origin where the
// committed rows are.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDatabase } from "../../embedded/embedded-server";
import { type CrashableServer, startCrashableServer } from "../../testing/crashable-server";
import type { Statement } from "./apply";
import { settlementPending } from "./origin-settlement";
import { readOriginProgress, TargetApplier } from "./target-applier";

let server: CrashableServer;
let pool: pg.Pool;

beforeAll(async () => {
  server = await startCrashableServer("brk-stamp-xid-wait", 38);
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
  name: "brk_xid_wait_ins",
  text: "insert into items (id, v) values ($1::bigint, 'x')",
  values: [String(id)],
});

type Path = "one-message" | "fallback" | "sequential" | "large";
const cases: { path: Path; end: "terminate" | "cancel" | "cut"; base: number; crash?: boolean }[] = [
  { path: "one-message", end: "terminate", base: 200, crash: true },
  { path: "fallback", end: "terminate", base: 100 },
  { path: "sequential", end: "terminate", base: 300 },
  { path: "large", end: "terminate", base: 400 },
  { path: "one-message", end: "cancel", base: 500 },
  { path: "fallback", end: "cut", base: 600 },
];

describe("a COMMIT that fails after the stamp", () => {
  for (const { path, end, base, crash } of cases) {
    it(`${path}, ${end}: leaves the origin where the committed rows are`, async () => {
      const origin = `shardshift_brk_xid_wait_${path.replace("-", "_")}_${end}_t0`;
      const open = () =>
        TargetApplier.open({ url: server.url("app"), ordinal: 0, origin, statementTimeoutMs: 1500 });
      const target = await open();
      const blocker = new pg.Client({ connectionString: server.url("app") });
      blocker.on("error", () => {});
      await blocker.connect();
      try {
        // Before synchronous replication bites: committed with synchronous_commit off.
        await target.apply([ins(base)], stamp(0x10n));
        if (path === "one-message") await target.apply([ins(base + 1)], stamp(0x11n));
        const held = path === "one-message" ? 0x11n : 0x10n;
        expect(await readOriginProgress(pool, origin)).toBe(held);
        // The blocker's NOTIFY commit waits for the standby, holding the NOTIFY queue's lock.
        await blocker.query("set synchronous_commit = on");
        const stuck = blocker
          .query("begin; insert into side values (1); notify items, 'blocker'; commit")
          .catch(() => {});
        await new Promise((r) => setTimeout(r, 300));
        const pid = (await target.connection.query("select pg_backend_pid() as pid")).rows[0].pid;
        let applying: Promise<unknown>;
        if (path === "large") {
          await target.beginLarge();
          await target.applyPiece([ins(base + 2)]);
          applying = target.commitLarge(stamp(0x20n));
        } else if (path === "sequential") {
          // A statement that may need a re-read takes the statement-by-statement path.
          const reread = { select: ins(0), upsert: () => ins(base + 2) };
          applying = target.apply([{ ...ins(base + 2), reread }], stamp(0x20n), {
            readLegacy: async () => null,
          });
        } else {
          const statement =
            path === "fallback" ? { ...ins(base + 2), name: "brk_xid_wait_ins_fresh" } : ins(base + 2);
          applying = target.apply([statement], stamp(0x20n));
        }
        applying.catch(() => {});
        await new Promise((r) => setTimeout(r, 2500));
        const waiting = await pool.query("select wait_event_type from pg_stat_activity where pid = $1", [
          pid,
        ]);
        expect(waiting.rows[0]?.wait_event_type).toBe("Lock");
        // The engine gives up on the hung target, or an operator ends the session — or only cancels
        // its statement, which fails the COMMIT with the session alive. Or the connection is cut:
        // no answer at all (the stamp's row is still in the server's buffer), the backend still
        // waiting inside COMMIT, and its xid to be found from pg_stat_activity.
        if (end === "cut") {
          const socket = (target.connection as unknown as { connection: { stream: { destroy(): void } } })
            .connection.stream;
          socket.destroy();
        } else {
          await pool.query(`select pg_${end}_backend($1)`, [pid]);
        }
        const failure = {
          terminate: /terminating connection/,
          cancel: /canceling statement/,
          cut: /Connection/,
        };
        await expect(applying).rejects.toThrow(failure[end]);
        expect(settlementPending(server.url("app"), origin)).toBe(false);
        const after = await readOriginProgress(pool, origin);
        const rows = (await pool.query("select 1 from items where id = $1", [base + 2])).rowCount;
        expect({ after, rows }).toEqual({ after: held, rows: 0 });
        if (crash) {
          // Recovery replays the abort (it moves the origin to the stamp) and then the move back.
          await server.crash();
          await server.restart();
          expect(await readOriginProgress(pool, origin)).toBe(held);
        }
        // The next runner starts where the committed rows are, and applies the batch again.
        const next = await open();
        try {
          expect(next.appliedUpTo).toBe(held);
          await pool.query(
            "select pg_terminate_backend(pid) from pg_stat_activity where query like 'begin; insert into side%'",
          );
          await stuck;
          await next.apply([ins(base + 2)], stamp(0x20n));
          expect(await readOriginProgress(pool, origin)).toBe(0x20n);
          expect((await pool.query("select 1 from items where id = $1", [base + 2])).rowCount).toBe(1);
        } finally {
          await next.close();
        }
      } finally {
        await pool.query(
          "select pg_terminate_backend(pid) from pg_stat_activity where query like 'begin; insert into side%'",
        );
        await blocker.end().catch(() => {});
        await target.close();
      }
    }, 30_000);
  }
});

describe("a settlement that cannot run at once", () => {
  it("stays pending, and the next open settles it before it reads the origin", async () => {
    const origin = "shardshift_brk_xid_wait_later_t0";
    const open = () =>
      TargetApplier.open({ url: server.url("app"), ordinal: 0, origin, statementTimeoutMs: 1500 });
    const target = await open();
    // Origins are per server: watched from another database, which stays open to us.
    const admin = new pg.Client({ connectionString: server.url("postgres") });
    admin.on("error", () => {});
    await admin.connect();
    // Its ALTER DATABASE must not wait for the standby that never comes.
    await admin.query("set synchronous_commit = local");
    const blocker = new pg.Client({ connectionString: server.url("app") });
    blocker.on("error", () => {});
    await blocker.connect();
    const unblock = () =>
      admin.query(
        "select pg_terminate_backend(pid) from pg_stat_activity where query like 'begin; insert into side%'",
      );
    try {
      await target.apply([ins(700)], stamp(0x10n));
      await target.apply([ins(701)], stamp(0x11n));
      await blocker.query("set synchronous_commit = on");
      const stuck = blocker
        .query("begin; insert into side values (1); notify items, 'blocker'; commit")
        .catch(() => {});
      await new Promise((r) => setTimeout(r, 300));
      const pid = (await target.connection.query("select pg_backend_pid() as pid")).rows[0].pid;
      const applying = target.apply([ins(702)], stamp(0x20n));
      applying.catch(() => {});
      await new Promise((r) => setTimeout(r, 2500));
      // The target refuses new sessions when the apply fails: the settlement cannot connect.
      await admin.query("alter database app allow_connections false");
      await admin.query("select pg_terminate_backend($1, 5000)", [pid]);
      await expect(applying).rejects.toThrow(/terminating connection/);
      expect(settlementPending(server.url("app"), origin)).toBe(true);
      expect(await readOriginProgress(admin, origin)).toBe(0x20n);
      await expect(open()).rejects.toThrow(/not settled yet .*CDC retries once the shard answers/);
      await admin.query("alter database app allow_connections true");
      const next = await open();
      try {
        expect(settlementPending(server.url("app"), origin)).toBe(false);
        expect(next.appliedUpTo).toBe(0x11n);
        expect(await readOriginProgress(admin, origin)).toBe(0x11n);
      } finally {
        await next.close();
      }
      await unblock();
      await stuck;
    } finally {
      await admin.query("alter database app allow_connections true").catch(() => {});
      await unblock().catch(() => {});
      await admin.end().catch(() => {});
      await blocker.end().catch(() => {});
      await target.close();
    }
  }, 30_000);
});
