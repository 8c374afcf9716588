// Adversarial (brk20): the target is killed (pg_ctl -m immediate) the moment a settlement moved an
// aborted stamp back — no read, no other write in between — with the WAL writer held off (10 s), so
// nothing but the settlement's own commit can have put the move on disk. Recovery replays the
// stamped abort (origin at the stamp) and must then replay the move back (origin before it).
// Several rounds, and one with a checkpoint between the abort and the settlement (the origin's
// checkpoint file then holds the stamp: only the move's WAL record brings it back).
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDatabase } from "../../embedded/embedded-server";
import { type CrashableServer, startCrashableServer } from "../../testing/crashable-server";
import type { Statement } from "./apply";
import { settlementPending } from "./origin-settlement";
import { readOriginProgress, TargetApplier } from "./target-applier";

let server: CrashableServer;

const admin = async <T>(database: string, f: (c: pg.Client) => Promise<T>): Promise<T> => {
  const c = new pg.Client({ connectionString: server.url(database) });
  c.on("error", () => {});
  await c.connect();
  try {
    await c.query("set synchronous_commit = local");
    return await f(c);
  } finally {
    await c.end().catch(() => {});
  }
};

beforeAll(async () => {
  server = await startCrashableServer("brk-settle-crash", 50);
  await ensureDatabase(server.url(), "app");
  await admin("app", async (c) => {
    await c.query("create table items (id bigint primary key, v text); create table side (x int)");
    await c.query(`create function items_notify() returns trigger language plpgsql as $$
      begin perform pg_notify('items', new.id::text); return null; end $$`);
    await c.query(
      "create trigger items_notify after insert on items for each row execute function items_notify()",
    );
    await c.query("alter table items enable always trigger items_notify");
    await c.query("alter system set synchronous_standby_names = 'nobody'");
    // Nothing flushes the WAL in the background: only a commit that waits for its flush does.
    await c.query("alter system set wal_writer_delay = '10s'");
    await c.query("alter system set wal_writer_flush_after = '1GB'");
    await c.query("select pg_reload_conf()");
  });
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

const stamp = (lsn: bigint) => ({ lsn, commitTimeIso: new Date().toISOString() });
const ins = (id: number): Statement => ({
  name: "brk_settle_crash_ins",
  text: "insert into items (id, v) values ($1::bigint, 'x')",
  values: [String(id)],
});

async function until(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("a target killed right after a settlement moved the origin back", () => {
  for (const { round, checkpoint } of [
    { round: 0, checkpoint: false },
    { round: 1, checkpoint: true },
    { round: 2, checkpoint: false },
  ]) {
    it(`round ${round}${checkpoint ? " (checkpoint before the settlement)" : ""}: recovery ends at the pre-batch origin`, async () => {
      const origin = `shardshift_brk_settle_crash_${round}_t0`;
      const base = 1000 * (round + 1);
      const target = await TargetApplier.open({ url: server.url("app"), ordinal: 0, origin });
      target.onLost(() => {});
      const blocker = new pg.Client({ connectionString: server.url("app") });
      blocker.on("error", () => {});
      await blocker.connect();
      try {
        await target.apply([ins(base)], stamp(0x10n));
        const held = 0x10n;
        // The blocker's NOTIFY commit waits for a standby that never comes, holding the queue's lock.
        await blocker.query("set synchronous_commit = on");
        blocker.query("begin; insert into side values (1); notify items, 'blocker'; commit").catch(() => {});
        const pid = (await target.connection.query("select pg_backend_pid() as pid")).rows[0].pid;
        await until("the blocker to wait for its standby", () =>
          admin("app", async (c) => {
            const r = await c.query("select 1 from pg_stat_activity where wait_event = 'SyncRep'");
            return (r.rowCount ?? 0) > 0;
          }),
        );
        const applying = target.apply([ins(base + 1)], stamp(0x20n));
        applying.catch(() => {});
        await until("the apply's COMMIT to wait for the NOTIFY lock", () =>
          admin("app", async (c) => {
            const r = await c.query("select wait_event_type from pg_stat_activity where pid = $1", [pid]);
            return r.rows[0]?.wait_event_type === "Lock";
          }),
        );
        if (checkpoint) {
          // The settlement may not run before the checkpoint: refuse it its connection until then.
          await admin("postgres", (c) => c.query("alter database app allow_connections false"));
        }
        await admin("postgres", (c) => c.query("select pg_terminate_backend($1, 5000)", [pid]));
        await expect(applying).rejects.toThrow(/terminating connection/);
        if (checkpoint) {
          expect(settlementPending(server.url("app"), origin)).toBe(true);
          await admin("postgres", async (c) => {
            expect(await readOriginProgress(c, origin)).toBe(0x20n);
            await c.query("checkpoint");
            await c.query("alter database app allow_connections true");
          });
          // The next open settles first; nothing else runs between its move and the kill.
          const next = await TargetApplier.open({ url: server.url("app"), ordinal: 0, origin });
          next.onLost(() => {});
          expect(next.appliedUpTo).toBe(held);
          await server.crash();
          await next.close();
        } else {
          expect(settlementPending(server.url("app"), origin)).toBe(false);
          await server.crash();
        }
        await target.close();
        await server.restart();
        const after = await admin("app", async (c) => ({
          origin: await readOriginProgress(c, origin),
          rows: (
            await c.query("select id from items where id = any($1::bigint[]) order by id", [[base, base + 1]])
          ).rows.map((r) => Number(r.id)),
        }));
        // The first batch's asynchronous commit may be lost with its origin (both or neither).
        if (after.rows.includes(base)) expect(after).toEqual({ origin: held, rows: [base] });
        else expect(after).toEqual({ origin: 0n, rows: [] });
      } finally {
        await blocker.end().catch(() => {});
        await target.close();
      }
    }, 60_000);
  }
});

// A stamped COMMIT whose answer is lost (the connection cut while it waits for the NOTIFY lock) and
// that then COMMITS on the server — the settlement could not connect until after it did. Nothing may
// be moved back: the rows are there, and the origin must stay at their stamp.
describe("a lost stamped COMMIT that committed after all", () => {
  it("is not moved back by its settlement", async () => {
    const origin = "shardshift_brk_settle_committed_t0";
    const target = await TargetApplier.open({ url: server.url("app"), ordinal: 0, origin });
    target.onLost(() => {});
    const blocker = new pg.Client({ connectionString: server.url("app") });
    blocker.on("error", () => {});
    await blocker.connect();
    try {
      await target.apply([ins(9000)], stamp(0x10n));
      await blocker.query("set synchronous_commit = on");
      blocker.query("begin; insert into side values (1); notify items, 'blocker'; commit").catch(() => {});
      const pid = (await target.connection.query("select pg_backend_pid() as pid")).rows[0].pid;
      await until("the blocker to wait for its standby", () =>
        admin("app", async (c) => {
          const r = await c.query("select 1 from pg_stat_activity where wait_event = 'SyncRep'");
          return (r.rowCount ?? 0) > 0;
        }),
      );
      const applying = target.apply([ins(9001)], stamp(0x20n));
      applying.catch(() => {});
      await until("the apply's COMMIT to wait for the NOTIFY lock", () =>
        admin("app", async (c) => {
          const r = await c.query("select wait_event_type from pg_stat_activity where pid = $1", [pid]);
          return r.rows[0]?.wait_event_type === "Lock";
        }),
      );
      await admin("postgres", (c) => c.query("alter database app allow_connections false"));
      (
        target.connection as unknown as { connection: { stream: { destroy(): void } } }
      ).connection.stream.destroy();
      await expect(applying).rejects.toThrow(/Connection/);
      expect(settlementPending(server.url("app"), origin)).toBe(true);
      // The blocker goes: the apply's COMMIT goes through on the server, its client long gone.
      await admin("postgres", async (c) => {
        await c.query(
          "select pg_terminate_backend(pid) from pg_stat_activity where query like 'begin; insert into side%'",
        );
        await until("the apply backend to finish", async () => {
          const r = await c.query("select 1 from pg_stat_activity where pid = $1", [pid]);
          return r.rowCount === 0;
        });
        await c.query("alter database app allow_connections true");
      });
      const next = await TargetApplier.open({ url: server.url("app"), ordinal: 0, origin });
      try {
        const rows = await admin(
          "app",
          async (c) => (await c.query("select 1 from items where id = 9001")).rowCount,
        );
        expect({ rows, appliedUpTo: next.appliedUpTo }).toEqual({ rows: 1, appliedUpTo: 0x20n });
        expect(settlementPending(server.url("app"), origin)).toBe(false);
      } finally {
        await next.close();
      }
    } finally {
      await admin("postgres", (c) => c.query("alter database app allow_connections true")).catch(() => {});
      await blocker.end().catch(() => {});
      await target.close();
    }
  }, 60_000);
});
