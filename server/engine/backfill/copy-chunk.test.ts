// Shard preparation and chunked copy on real servers: the schema appears on every shard
// (idempotently), and copying every chunk of every table yields an exact, placed copy.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadDemoDataset } from "../../demo/dataset";
import { compareShards } from "../../testing/compare-shards";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { introspectSource, type SourceSchema } from "../analysis/introspect";
import { applyToShard, type Statement, tableApplier } from "../cdc/apply";
import { ChangeRouter, placementRoute } from "../cdc/change-router";
import { type Tuple, UNCHANGED_TOAST } from "../cdc/pgoutput";
import { hashPlacement } from "../router/placement";
import { COPIER_TAKEN_OVER, claimCopier } from "../shared/snapshot-guard";
import { planTable } from "../shared/table-plan";
import { copyChunk, databaseLocale, readChunk, writeChunk, writeModeForLocales } from "./copy-chunk";
import { prepareShard } from "./prepare-shards";

let legacy: TestDatabase;
let shards: TestDatabase[];
let schema: SourceSchema;

beforeAll(async () => {
  legacy = await createTestDatabase("chunk_legacy");
  shards = [await createTestDatabase("chunk_shard0"), await createTestDatabase("chunk_shard1")];
  await loadDemoDataset(legacy.pool, { tenants: 300, rows: 20_000, seed: 7 });
  const client = await legacy.pool.connect();
  try {
    schema = await introspectSource(client, "tenant_id");
  } finally {
    client.release();
  }
});

afterAll(async () => {
  await legacy?.drop();
  for (const shard of shards ?? []) await shard.drop();
});

const placement = () => hashPlacement(shards.length);

async function withClient<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>) {
  const c = await pool.connect();
  try {
    return await fn(c);
  } finally {
    c.release();
  }
}

describe("shard preparation", () => {
  it("classifies tables and creates the schema on every shard, idempotently", async () => {
    const kinds = Object.fromEntries(schema.tables.map((t) => [t.name, t.kind]));
    expect(kinds).toMatchObject({
      currencies: "reference",
      billing_plans: "reference",
      tasks: "sharded",
      events: "sharded",
    });
    for (const [i, shard] of shards.entries()) {
      const first = await withClient(shard.pool, (c) => prepareShard(c, `shard-${i}`, schema));
      expect(first.createdTables).toHaveLength(schema.tables.length);
      const second = await withClient(shard.pool, (c) => prepareShard(c, `shard-${i}`, schema));
      expect(second.createdTables).toEqual([]);
    }
    const { rows } = await shards[0]!.pool.query(
      "select count(*)::int as n from pg_constraint where contype = 'f' and connamespace = 'public'::regnamespace",
    );
    expect(rows[0].n).toBe(schema.tables.reduce((n, t) => n + t.foreignKeys.length, 0));
  });

  for (const mode of ["range", "upsert"] as const) {
    it(`never overwrites what CDC carried past the chunk's snapshot (${mode} write)`, async () => {
      const placement = hashPlacement(shards.length);
      const table = schema.tables.find((t) => t.name === "tasks");
      if (!table) throw new Error("no tasks table");
      const plan = planTable(table, "tenant_id");
      const applier = tableApplier(table);
      // Three rows of the table's first chunk, all on shard 0's tenants.
      const { rows: picked } = await legacy.pool.query<{ tenant_id: string; id: string }>(
        "select tenant_id::text, id::text from (select tenant_id, id from tasks order by tenant_id, id limit 40) t",
      );
      const onShard0 = picked.filter((r) => placement.shardFor(r.tenant_id) === 0).slice(0, 3);
      if (onShard0.length < 3) throw new Error("the first chunk has fewer than 3 rows on shard 0");
      const [updated, deleted, seen] = onShard0 as [
        (typeof onShard0)[0],
        (typeof onShard0)[0],
        (typeof onShard0)[0],
      ];
      const rowOf = async (key: { tenant_id: string; id: string }) =>
        (await legacy.pool.query<Tuple>(applier.selectByKey(key)))?.rows[0];
      /** Commits `sql` on legacy and returns its transaction id (xid8). */
      const commitOnLegacy = (sql: string, key: { tenant_id: string; id: string }) =>
        withClient(legacy.pool, async (c) => {
          await c.query("begin");
          await c.query(sql, [key.tenant_id, key.id]);
          const { rows } = await c.query<{ xid: string }>("select pg_current_xact_id()::text as xid");
          await c.query("commit");
          return rows[0]?.xid ?? "";
        });
      /** What the CDC runner does with one change: write it on the shard, guarded, recorded. */
      const cdcApplies = async (statement: Statement, key: { tenant_id: string; id: string }, xid: string) =>
        withClient(shards[0]!.pool, (c) =>
          applyToShard(
            c,
            [{ ...statement, touches: { relation: table.qualified, key: [key.tenant_id, key.id], xid } }],
            {
              guarded: () => true,
            },
          ),
        );

      // Changed before the chunk's snapshot, applied by CDC only after the read: the chunk has it too.
      const seenXid = await commitOnLegacy(
        "update tasks set title = 'changed before the snapshot' where tenant_id = $1 and id = $2",
        seen,
      );
      await withClient(legacy.pool, async (source) => {
        const targets = await Promise.all(shards.map((s) => s.pool.connect()));
        try {
          await copyChunk(source, targets, placement, plan, null, 40, {
            mode,
            afterRead: async () => {
              // Changed after the snapshot and carried to the shard by CDC before the chunk lands.
              const updateXid = await commitOnLegacy(
                "update tasks set title = 'changed after the snapshot' where tenant_id = $1 and id = $2",
                updated,
              );
              const updatedRow = await rowOf(updated);
              if (!updatedRow) throw new Error("updated row vanished");
              await cdcApplies(applier.upsert(updatedRow), updated, updateXid);
              const deleteXid = await commitOnLegacy(
                "delete from tasks where tenant_id = $1 and id = $2",
                deleted,
              );
              await cdcApplies(applier.deleteByKey(deleted), deleted, deleteXid);
              const seenRow = await rowOf(seen);
              if (!seenRow) throw new Error("seen row vanished");
              await cdcApplies(applier.upsert(seenRow), seen, seenXid);
            },
          });
        } finally {
          for (const t of targets) t.release();
        }
      });
      const onShard = async (key: { tenant_id: string; id: string }) =>
        (
          await shards[0]!.pool.query<{ title: string }>(
            "select title from tasks where tenant_id = $1 and id = $2",
            [key.tenant_id, key.id],
          )
        ).rows[0]?.title ?? null;
      expect(await onShard(updated)).toBe("changed after the snapshot"); // not the chunk's older title
      expect(await onShard(deleted)).toBeNull(); // not resurrected
      expect(await onShard(seen)).toBe("changed before the snapshot");
    });
  }

  it("skips a key CDC wrote even when its type's text cast differs from COPY's (char(n))", async () => {
    await legacy.pool.query(
      "create table padded (tenant_id bigint not null, code char(4) not null, note text, primary key (tenant_id, code))",
    );
    await legacy.pool.query(
      "insert into padded select t, 'k' || g, 'v' from generate_series(1, 3) t, generate_series(1, 5) g",
    );
    const withPadded = await withClient(legacy.pool, (c) => introspectSource(c, "tenant_id"));
    for (const [i, shard] of shards.entries()) {
      await withClient(shard.pool, (c) => prepareShard(c, `shard-${i}`, withPadded));
    }
    const table = withPadded.tables.find((t) => t.name === "padded");
    if (!table) throw new Error("no padded table");
    const gone = { tenant_id: "1", code: "k1" };
    const owner = shards[placement().shardFor(gone.tenant_id)]!;
    await withClient(legacy.pool, async (source) => {
      const targets = await Promise.all(shards.map((s) => s.pool.connect()));
      try {
        await copyChunk(source, targets, placement(), planTable(table, "tenant_id"), null, 100, {
          afterRead: async () => {
            const xid = await withClient(legacy.pool, async (c) => {
              await c.query("begin");
              await c.query("delete from padded where tenant_id = $1 and code = $2", [
                gone.tenant_id,
                gone.code,
              ]);
              const { rows } = await c.query<{ xid: string }>("select pg_current_xact_id()::text as xid");
              await c.query("commit");
              return rows[0]?.xid ?? "";
            });
            // pgoutput sends char(4) padded, as its output function writes it.
            const key = { tenant_id: "1", code: "k1  " };
            await withClient(owner.pool, (c) =>
              applyToShard(
                c,
                [
                  {
                    ...tableApplier(table).deleteByKey(key),
                    touches: { relation: table.qualified, key: ["1", "k1  "], xid },
                  },
                ],
                { guarded: () => true },
              ),
            );
          },
        });
      } finally {
        for (const t of targets) t.release();
      }
    });
    const { rows } = await owner.pool.query("select 1 from padded where tenant_id = 1 and code = 'k1'");
    expect(rows).toHaveLength(0); // deleted on legacy after the snapshot: not resurrected
    const { rows: kept } = await owner.pool.query(
      "select count(*)::int as n from padded where tenant_id = 1",
    );
    expect(kept[0]?.n).toBe(4);
  });

  it("refuses a chunk from a copier another slice took the table over from", async () => {
    const table = schema.tables.find((t) => t.name === "projects");
    if (!table) throw new Error("no projects table");
    const plan = planTable(table, "tenant_id");
    await withClient(legacy.pool, async (source) => {
      const targets = await Promise.all(shards.map((s) => s.pool.connect()));
      try {
        for (const t of targets) await claimCopier(t, table.qualified, "slice-a");
        const chunk = await readChunk(source, targets.length, placement(), plan, null, 20);
        // slice-b takes over (its worker got the task after slice-a's lock connection dropped).
        for (const t of targets) await claimCopier(t, table.qualified, "slice-b");
        await expect(writeChunk(targets, plan, chunk, "range", "slice-a")).rejects.toThrow(COPIER_TAKEN_OVER);
        const written = await writeChunk(targets, plan, chunk, "range", "slice-b");
        expect(written.perShard.reduce((a, b) => a + b, 0)).toBe(20);
      } finally {
        for (const t of targets) t.release();
      }
    });
  });

  it("completes a partial update of a row the backfill has not copied yet from legacy", async () => {
    const table = schema.tables.find((t) => t.name === "tasks");
    if (!table) throw new Error("no tasks table");
    const applier = tableApplier(table);
    const { rows } = await legacy.pool.query<{ tenant_id: string; id: string }>(
      "select tenant_id::text, id::text from tasks order by tenant_id desc, id desc limit 1",
    );
    const key = rows[0];
    if (!key) throw new Error("no task rows");
    const shard = shards[placement().shardFor(key.tenant_id)]!;
    await shard.pool.query("delete from tasks where tenant_id = $1 and id = $2", [key.tenant_id, key.id]);
    // The change as pgoutput delivers an UPDATE that left a TOASTed column alone.
    const partial: Record<string, Tuple[string]> = {
      ...(await legacy.pool.query<Tuple>(applier.selectByKey(key))).rows[0],
      title: "partial",
    };
    for (const c of table.columns) if (c.name === "description") partial[c.name] = UNCHANGED_TOAST;
    await legacy.pool.query("update tasks set title = 'partial' where tenant_id = $1 and id = $2", [
      key.tenant_id,
      key.id,
    ]);
    const router = new ChangeRouter(schema, placementRoute(placement()));
    const relation = {
      relationId: 1,
      schema: table.schema,
      table: table.name,
      replicaIdentity: "default" as const,
      columns: table.columns
        .filter((c) => !c.generatedExpr)
        .map((c) => ({
          name: c.name,
          typeOid: c.typeOid,
          typeMod: -1,
          isKey: table.primaryKey.includes(c.name),
        })),
    };
    const perShard = router.route([
      { xid: "1", changes: [{ kind: "update", relation, old: null, new: partial }] },
    ]);
    await withClient(shard.pool, (c) =>
      applyToShard(c, perShard[placement().shardFor(key.tenant_id)] ?? [], {
        readLegacy: async (select) => (await legacy.pool.query<Tuple>(select)).rows[0] ?? null,
      }),
    );
    const { rows: after } = await shard.pool.query(
      "select title, description from tasks where tenant_id = $1 and id = $2",
      [key.tenant_id, key.id],
    );
    const { rows: expected } = await legacy.pool.query(
      "select title, description from tasks where tenant_id = $1 and id = $2",
      [key.tenant_id, key.id],
    );
    expect(after).toEqual(expected);
  });

  it("copies every row to the shard its tenant is placed on, reference tables to all", async () => {
    const placement = hashPlacement(shards.length);
    await withClient(legacy.pool, async (source) => {
      const targets = await Promise.all(shards.map((s) => s.pool.connect()));
      try {
        for (const table of schema.tables) {
          const plan = planTable(table, "tenant_id");
          let after: string[] | null = null;
          for (;;) {
            const chunk = await copyChunk(source, targets, placement, plan, after, 997);
            if (chunk.rows === 0) break;
            after = chunk.lastKey;
          }
        }
      } finally {
        for (const t of targets) t.release();
      }
    });
    const differences = await compareShards(
      legacy.pool,
      shards.map((s) => s.pool),
      schema,
      placement,
    );
    expect(differences).toEqual([]);
    const perShard = await Promise.all(
      shards.map(async (s) => (await s.pool.query("select count(*)::int n from tasks")).rows[0].n),
    );
    expect(perShard.every((n) => n > 0)).toBe(true);
  });
});

describe("write mode and collation versions", () => {
  it("reads the collation library's version with the locale, and a different version means upsert", async () => {
    const locale = await withClient(legacy.pool, (c) => databaseLocale(c));
    expect(locale).toMatch(/\|version=/);
    expect(writeModeForLocales(locale, [locale, locale])).toBe("range");
    // Same locale names, another glibc/ICU release on one shard: its text order may differ.
    const upgraded = locale.replace(/version=.*$/, "version=999.1");
    expect(writeModeForLocales(locale, [locale, upgraded])).toBe("upsert");
  });
});
