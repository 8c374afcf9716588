// A position is confirmed only once the shard's WAL is flushed past the batch's commit, and a batch
// applied while a check reads the positions waits for the next check. Against a real server,
// committing asynchronously as CDC does.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitFor } from "../../testing/worker-process";
import { DurableConfirmer, readShardWal, type ShardWal } from "./durable-confirm";
import { parseLsn } from "./slot";

let shard: TestDatabase;
let apply: pg.Client;

beforeAll(async () => {
  shard = await createTestDatabase("confirm_shard");
  await shard.pool.query("create table t (id int primary key)");
  apply = new pg.Client({ connectionString: shard.url });
  await apply.connect();
  await apply.query("set synchronous_commit = off");
});

afterAll(async () => {
  await apply?.end();
  await shard?.drop();
});

const positions = (flush = false): Promise<ShardWal> => readShardWal(shard.pool, flush);

/** Commits one row asynchronously; returns a WAL position at or past its commit record. */
async function commitRow(id: number): Promise<bigint> {
  await apply.query(`begin; insert into t values (${id}); commit`);
  const { rows } = await apply.query<{ lsn: string }>("select pg_current_wal_insert_lsn()::text as lsn");
  return parseLsn(rows[0]?.lsn ?? "0/0");
}

describe("DurableConfirmer", () => {
  it("confirms a batch only after the shard flushed past its commit", { timeout: 30_000 }, async () => {
    const commits = new Map<bigint, bigint>();
    const violations: string[] = [];
    const verifications: Promise<void>[] = [];
    let confirmed = 0n;
    let duringRead: (() => Promise<void>) | null = null;
    const confirmer = new DurableConfirmer(
      async (_, flush) => {
        // Before the hook, everything is flushed: only the marking decides whether 23 is confirmed.
        const wal = await positions(flush || duringRead !== null);
        const hook = duringRead;
        duringRead = null;
        await hook?.();
        return wal;
      },
      (lsn) => {
        confirmed = lsn;
        // Every batch up to lsn must be on disk now.
        verifications.push(
          positions().then(({ flush }) => {
            for (const [source, commit] of commits) {
              if (source <= lsn && commit > flush)
                violations.push(`source ${source}: commit ${commit} > flush ${flush}`);
            }
          }),
        );
      },
    );

    for (let i = 1; i <= 20; i++) {
      commits.set(BigInt(i), await commitRow(i));
      confirmer.applied(BigInt(i), [0]);
    }
    confirmer.applied(21n, []); // a batch that wrote nothing still confirms in order
    await waitFor("batches 1–21 to be confirmed", async () => {
      await confirmer.check();
      return confirmed === 21n;
    });

    // Batch 23 commits while a check reads the positions: that check must not confirm it.
    commits.set(22n, await commitRow(22));
    confirmer.applied(22n, [0]);
    duringRead = async () => {
      commits.set(23n, await commitRow(23));
      confirmer.applied(23n, [0]);
    };
    await confirmer.check();
    expect(duringRead).toBeNull(); // the read happened
    expect(confirmed).toBeLessThan(23n);
    await waitFor("batch 23 to be confirmed", async () => {
      await confirmer.check();
      return confirmed === 23n;
    });
    expect(confirmer.waiting).toBe(0);
    await Promise.all(verifications);
    expect(verifications.length).toBeGreaterThan(0);
    expect(violations).toEqual([]);
  });
});
