// Adversarial (brk20): a settlement left pending (the target refused its connection) lives in the
// module state of the thread that recorded it — a CDC thread (isolated-runner.ts) — not in the
// process. isolated-runner ends a thread with worker.terminate() when one of its runners does not
// stop within 20 s (a runner stuck on a target that does not answer: exactly when settlements are
// pending; and every plan's forward stream shares that thread), and a thread can die. The next
// runner starts in a new thread, whose open finds nothing pending, reads the origin at the aborted
// batch's stamp and skips that batch for good (seen: the new thread's open at 0/20, the batch of
// 0/20 never committed; it held 0/10).
//
// Fixed: a CDC thread reports its pending settlements to the process (handOverSettlements), which
// hands the last report to the lane's next thread (isolated-runner.ts). The probe thread does what
// cdc-thread.ts does; the test keeps the last report as isolated-runner does.
import type { Worker } from "node:worker_threads";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureDatabase } from "../../embedded/embedded-server";
import { type CrashableServer, startCrashableServer } from "../../testing/crashable-server";
import { startTsThread } from "../shared/ts-thread";
import type { SettlementsMessage, StampedFailure } from "./origin-settlement";
import { readOriginProgress } from "./target-applier";

let server: CrashableServer;
let admin: pg.Client;

beforeAll(async () => {
  server = await startCrashableServer("brk-settle-thread", 51);
  await ensureDatabase(server.url(), "app");
  const c = new pg.Client({ connectionString: server.url("app") });
  await c.connect();
  await c.query("create table items (id bigint primary key, v text); create table side (x int)");
  await c.query(`create function items_notify() returns trigger language plpgsql as $$
    begin perform pg_notify('items', new.id::text); return null; end $$`);
  await c.query(
    "create trigger items_notify after insert on items for each row execute function items_notify()",
  );
  await c.query("alter table items enable always trigger items_notify");
  await c.query("alter system set synchronous_standby_names = 'nobody'");
  await c.query("select pg_reload_conf()");
  await c.end();
  admin = new pg.Client({ connectionString: server.url("postgres") });
  admin.on("error", () => {});
  await admin.connect();
  await admin.query("set synchronous_commit = local");
}, 120_000);

afterAll(async () => {
  await admin?.end().catch(() => {});
  await server?.stop();
});

type Answer = { ok: boolean; error?: string; pending?: boolean; appliedUpTo?: bigint; pid?: number };

/** What the last probe thread reported pending (isolated-runner.ts keeps it per lane). */
let carried: StampedFailure[] = [];

function probe(origin: string): { worker: Worker; ready: Promise<void>; ask(m: object): Promise<Answer> } {
  const worker = startTsThread(new URL("../../testing/settlement-thread-probe.ts", import.meta.url), {
    workerData: { url: server.url("app"), origin, settlements: carried },
  });
  const answers: ((a: Answer) => void)[] = [];
  let loaded = () => {};
  const ready = new Promise<void>((r) => (loaded = r));
  worker.on("message", (m: Answer & { ready?: boolean } & Partial<SettlementsMessage>) => {
    if (m.kind === "settlements") carried = m.failures ?? [];
    else if (m.ready) loaded();
    else answers.shift()?.(m);
  });
  return {
    worker,
    ready,
    ask: (m) => {
      const answer = new Promise<Answer>((r) => answers.push(r));
      worker.postMessage(m);
      return answer;
    },
  };
}

async function until(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("a CDC thread ended while a settlement is pending in it", () => {
  it("leaves the settlement to the next thread: its open finds the origin where the committed rows are", async () => {
    const origin = "shardshift_brk_settle_thread_t0";
    const first = probe(origin);
    const blocker = new pg.Client({ connectionString: server.url("app") });
    blocker.on("error", () => {});
    await blocker.connect();
    const unblock = () =>
      admin.query(
        "select pg_terminate_backend(pid) from pg_stat_activity where query like 'begin; insert into side%'",
      );
    let second: ReturnType<typeof probe> | null = null;
    try {
      await first.ready;
      const opened = await first.ask({ cmd: "open" });
      expect(opened).toMatchObject({ ok: true, appliedUpTo: 0n });
      expect(await first.ask({ cmd: "apply", id: 1, stamp: 0x10n })).toEqual({ ok: true });
      // COMMIT of the next batch waits for the NOTIFY queue's lock, held by a commit waiting for a
      // standby that never comes; then the apply session is terminated while the target refuses
      // new connections (the settlement cannot run: it stays pending in the thread).
      await blocker.query("set synchronous_commit = on");
      blocker.query("begin; insert into side values (1); notify items, 'blocker'; commit").catch(() => {});
      await until("the blocker to wait for its standby", async () => {
        const r = await admin.query("select 1 from pg_stat_activity where wait_event = 'SyncRep'");
        return (r.rowCount ?? 0) > 0;
      });
      const applying = first.ask({ cmd: "apply", id: 2, stamp: 0x20n });
      await until("the apply's COMMIT to wait for the NOTIFY lock", async () => {
        const r = await admin.query("select wait_event_type from pg_stat_activity where pid = $1", [
          opened.pid,
        ]);
        return r.rows[0]?.wait_event_type === "Lock";
      });
      await admin.query("alter database app allow_connections false");
      await admin.query("select pg_terminate_backend($1, 5000)", [opened.pid]);
      expect(await applying).toMatchObject({ ok: false, pending: true });
      expect(await readOriginProgress(admin, origin)).toBe(0x20n);
      expect(carried.map((f) => [f.origin, f.stamp])).toEqual([[origin, 0x20n]]);
      // isolated-runner's stop() after its timeout, or a thread that died.
      await first.worker.terminate();
      await admin.query("alter database app allow_connections true");
      await unblock();
      // The next runner, in a new thread.
      second = probe(origin);
      await second.ready;
      const reopened = await second.ask({ cmd: "open" });
      expect(carried).toEqual([]);
      // 0x20 here: the batch of id 2 (never committed) would be skipped for good.
      expect({ appliedUpTo: reopened.appliedUpTo, origin: await readOriginProgress(admin, origin) }).toEqual({
        appliedUpTo: 0x10n,
        origin: 0x10n,
      });
    } finally {
      await admin.query("alter database app allow_connections true").catch(() => {});
      await unblock().catch(() => {});
      await blocker.end().catch(() => {});
      await first.worker.terminate();
      await second?.worker.terminate();
    }
  }, 60_000);
});
