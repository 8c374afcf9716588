// Adversarial (break16b): the stamp-and-commit message with pg_current_xact_id() (stamp-without-writes)
// and the fallback path's order (the stamp only after the statements' Sync succeeded). Invariant: a
// target's origin moves if and only if the batch's rows committed there; a failed batch leaves
// nothing and the session usable.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import type { Statement } from "./apply";
import { readOriginProgress, TargetApplier } from "./target-applier";

let database: TestDatabase;
const origins: string[] = [];

beforeAll(async () => {
  database = await createTestDatabase("break_stamp_xid");
  await database.pool.query("create table items (id bigint primary key, v text)");
});

afterAll(async () => {
  for (const origin of origins)
    await database?.pool
      .query(
        `select pg_replication_origin_drop(roname) from pg_replication_origin where roname = '${origin}'`,
      )
      .catch(() => {});
  await database?.drop();
});

const stamp = (lsn: bigint) => ({ lsn, commitTimeIso: new Date().toISOString() });
const del = (name: string, id: number): Statement => ({
  name,
  text: "delete from items where id = $1::bigint",
  values: [String(id)],
});
const ins = (name: string, id: number, v = "x"): Statement => ({
  name,
  text: "insert into items (id, v) values ($1::bigint, $2::text)",
  values: [String(id), v],
});
const count = async (ids: number[]) =>
  Number(
    (await database.pool.query("select count(*)::int as n from items where id = any($1::bigint[])", [ids]))
      .rows[0].n,
  );

async function open(origin: string): Promise<TargetApplier> {
  origins.push(origin);
  return TargetApplier.open({ url: database.url, ordinal: 0, origin });
}

describe("the stamp with its xid", () => {
  it("replaying the same stamp, and a lower stamp after a higher, never move the origin back", async () => {
    const origin = "shardshift_brk_xid_replay_t0";
    const target = await open(origin);
    try {
      await target.apply([del("brk_xid_r_del", 1)], stamp(0x500n));
      await target.apply([del("brk_xid_r_del", 1)], stamp(0x500n));
      expect(await readOriginProgress(database.pool, origin)).toBe(0x500n);
      await target.apply([del("brk_xid_r_del", 2)], stamp(0x300n));
      expect(await readOriginProgress(database.pool, origin)).toBe(0x500n);
      expect(target.appliedUpTo).toBe(0x500n);
      // A fresh session on the same origin reads the highest, too.
      await target.close();
      const again = await open(origin);
      expect(again.appliedUpTo).toBe(0x500n);
      await again.close();
    } finally {
      await target.close();
    }
  });

  it("a second applier on the same origin fails its open cleanly; the first keeps applying", async () => {
    const origin = "shardshift_brk_xid_race_t0";
    // Both opens at once, the origin not created yet: both try to create it.
    const opened = await Promise.allSettled([open(origin), open(origin)]);
    const ok = opened.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    try {
      expect(ok.length).toBe(1);
      const first = ok[0] as TargetApplier;
      await expect(open(origin)).rejects.toThrow();
      await first.apply([ins("brk_xid_race_ins", 900)], stamp(0x10n));
      await first.apply([ins("brk_xid_race_ins", 901)], stamp(0x20n));
      expect(await readOriginProgress(database.pool, origin)).toBe(0x20n);
      expect(await count([900, 901])).toBe(2);
    } finally {
      for (const t of ok) await t.close();
    }
  });

  for (const path of ["fallback", "one-message"] as const) {
    it(`${path}: a no-op batch moves the origin; a batch failing at its first statement does not`, async () => {
      const origin = `shardshift_brk_xid_${path.replace("-", "_")}_t0`;
      const name = `brk_xid_${path.replace("-", "_")}`;
      const base = path === "fallback" ? 1000 : 2000;
      const target = await open(origin);
      try {
        if (path === "one-message") {
          // Parse both names first, so the batches below go in one message.
          await target.apply([del(`${name}_del`, -1), ins(`${name}_ins`, base)], stamp(0x10n));
        } else {
          await target.apply([ins(`${name}_seed`, base)], stamp(0x10n));
        }
        expect(await readOriginProgress(database.pool, origin)).toBe(0x10n);
        // No-op.
        await target.apply([del(`${name}_del`, -2)], stamp(0x20n));
        expect(await readOriginProgress(database.pool, origin)).toBe(0x20n);
        // Fails at its first statement (duplicate key), a later statement would write.
        const failing =
          path === "fallback"
            ? [ins(`${name}_ins2`, base), ins(`${name}_ins2`, base + 1)]
            : [ins(`${name}_ins`, base), ins(`${name}_ins`, base + 1)];
        await expect(target.apply(failing, stamp(0x30n))).rejects.toThrow(/duplicate key/);
        expect(await readOriginProgress(database.pool, origin)).toBe(0x20n);
        expect(await count([base + 1])).toBe(0);
        expect(target.appliedUpTo).toBe(0x20n);
        // Fails at its first statement on a parse error (fallback: a name never parsed).
        await expect(
          target.apply(
            [{ name: `${name}_bad`, text: "delete from nosuch where id = $1", values: ["1"] }],
            stamp(0x31n),
          ),
        ).rejects.toThrow();
        expect(await readOriginProgress(database.pool, origin)).toBe(0x20n);
        // The session is usable: the next batch commits and stamps.
        await target.apply([ins(`${name}_ins`, base + 2)], stamp(0x40n));
        expect(await readOriginProgress(database.pool, origin)).toBe(0x40n);
        expect(await count([base + 2])).toBe(1);
        // And a no-op again, after the failures.
        await target.apply([del(`${name}_del`, -3)], stamp(0x50n));
        expect(await readOriginProgress(database.pool, origin)).toBe(0x50n);
      } finally {
        await target.close();
      }
    });
  }

  it("fallback: the session terminated between the statements' Sync and the stamp leaves nothing", async () => {
    const origin = "shardshift_brk_xid_kill_t0";
    const target = await open(origin);
    try {
      await target.apply([del("brk_xid_kill_del", -1)], stamp(0x10n));
      const client = target.connection;
      const pid = (await client.query("select pg_backend_pid() as pid")).rows[0].pid;
      const original = client.query.bind(client);
      let killed = false;
      // biome-ignore lint/suspicious/noExplicitAny: test hook
      (client as any).query = async (...args: any[]) => {
        // The stamped message goes as a pg.Query (stamped-commit.ts watches its row): match its text.
        const text = typeof args[0] === "string" ? args[0] : args[0]?.text;
        if (!killed && typeof text === "string" && text.startsWith("set constraints all immediate")) {
          killed = true;
          await database.pool.query("select pg_terminate_backend($1)", [pid]);
          await new Promise((r) => setTimeout(r, 300));
        }
        // biome-ignore lint/suspicious/noExplicitAny: test hook
        return (original as any)(...args);
      };
      // A name never parsed: the fallback path.
      await expect(target.apply([ins("brk_xid_kill_ins", 3000)], stamp(0x20n))).rejects.toThrow();
      expect(killed).toBe(true);
      expect(await readOriginProgress(database.pool, origin)).toBe(0x10n);
      expect(await count([3000])).toBe(0);
      expect(target.appliedUpTo).toBe(0x10n);
    } finally {
      await target.close();
    }
    // A new session on the origin (it must be free again) carries on.
    const next = await open(origin);
    try {
      expect(next.appliedUpTo).toBe(0x10n);
      await next.apply([ins("brk_xid_kill_ins", 3000)], stamp(0x20n));
      expect(await readOriginProgress(database.pool, origin)).toBe(0x20n);
      expect(await count([3000])).toBe(1);
    } finally {
      await next.close();
    }
  });
});
