// Break pass: a stamped one-message transaction whose COMMIT itself fails (a deferred constraint
// checked at commit). PostgreSQL advances the origin on a stamped abort: does the stamp move?
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import type { Statement } from "./apply";
import { readOriginProgress, TargetApplier } from "./target-applier";

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase("break_one_message_commit_fail");
  await database.pool.query(`create table items (id bigint primary key, u int,
    constraint u_unique unique (u) deferrable initially deferred)`);
  // A deferred check that fires in an apply session too (ENABLE ALWAYS), at COMMIT.
  await database.pool.query(`create table limits (id bigint primary key, v int not null);
    create function limits_check() returns trigger language plpgsql as $$
    begin
      if new.v < 0 then raise exception 'limits: % is negative', new.id; end if;
      return null;
    end $$;
    create constraint trigger limits_check after insert or update on limits
      deferrable initially deferred for each row execute function limits_check();
    alter table limits enable always trigger limits_check`);
});

afterAll(async () => {
  await database?.drop();
});

const insert = (id: number, u: number): Statement => ({
  name: "break_commit_fail_insert",
  text: "insert into items (id, u) values ($1::bigint, $2::int)",
  values: [String(id), String(u)],
});

const limit = (id: number, v: number): Statement => ({
  name: "break_commit_fail_limit",
  text: "insert into limits (id, v) values ($1::bigint, $2::int)",
  values: [String(id), String(v)],
});

describe("a one-message transaction whose commit fails", () => {
  it("a deferred constraint trigger that fails at COMMIT: nothing written, the origin unmoved", {
    timeout: 60_000,
  }, async () => {
    const origin = "shardshift_break_commit_fail_t1";
    const target = await TargetApplier.open({ url: database.url, ordinal: 1, origin });
    try {
      await target.apply([limit(1, 1)], { lsn: 0x100n, commitTimeIso: new Date().toISOString() });
      expect(await readOriginProgress(database.pool, origin)).toBe(0x100n);
      // The statement is parsed: one message. Its row passes every check but the deferred one.
      await expect(
        target.apply([limit(2, 2), limit(3, -3)], { lsn: 0x200n, commitTimeIso: new Date().toISOString() }),
      ).rejects.toThrow(/negative/);
      expect((await database.pool.query("select id from limits order by id")).rows).toEqual([{ id: "1" }]);
      // Nothing committed: the origin must still say 0x100, or a restart skips the batch for good.
      expect(await readOriginProgress(database.pool, origin)).toBe(0x100n);
      // The session is usable, and the same batch without the bad row commits.
      await target.apply([limit(2, 2)], { lsn: 0x200n, commitTimeIso: new Date().toISOString() });
      expect(await readOriginProgress(database.pool, origin)).toBe(0x200n);

      // The same through the pipelined path (a statement not parsed yet).
      const fresh = (id: number, v: number): Statement => ({
        ...limit(id, v),
        name: "break_commit_fail_fresh",
      });
      await expect(
        target.apply([fresh(4, 4), fresh(5, -5)], { lsn: 0x300n, commitTimeIso: new Date().toISOString() }),
      ).rejects.toThrow(/negative/);
      expect((await database.pool.query("select id from limits order by id")).rows).toEqual([
        { id: "1" },
        { id: "2" },
      ]);
      expect(await readOriginProgress(database.pool, origin)).toBe(0x200n);
    } finally {
      await target.close();
      await database.pool.query(
        `select pg_replication_origin_drop(roname) from pg_replication_origin where roname = '${origin}'`,
      );
    }
  });

  it("a deferrable unique constraint (not rechecked in replica mode): whole or nothing", {
    timeout: 60_000,
  }, async () => {
    const origin = "shardshift_break_commit_fail_t0";
    const target = await TargetApplier.open({ url: database.url, ordinal: 0, origin });
    try {
      await target.apply([insert(1, 1)], { lsn: 0x100n, commitTimeIso: new Date().toISOString() });
      const result = await target
        .apply([insert(2, 2), insert(3, 2)], { lsn: 0x200n, commitTimeIso: new Date().toISOString() })
        .then(
          () => "committed",
          (e: Error) => e.message,
        );
      const rows = (await database.pool.query("select id from items order by id")).rows.map((r) => r.id);
      const progress = await readOriginProgress(database.pool, origin);
      // Either the batch committed whole (stamp moved) or nothing did (stamp stayed).
      if (result === "committed") {
        expect(progress).toBe(0x200n);
      } else {
        expect(rows).toEqual(["1"]);
        expect(progress, `after: ${result}`).toBe(0x100n);
      }
    } finally {
      await target.close();
      await database.pool.query(
        `select pg_replication_origin_drop(roname) from pg_replication_origin where roname = '${origin}'`,
      );
    }
  });
});
