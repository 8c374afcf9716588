// Replica identities CDC cannot apply by are refused at movement start, with the reason and the
// fix: USING INDEX on an index other than the primary key, NOTHING, and no primary key at all;
// DEFAULT, FULL and USING INDEX on the primary key's own index are accepted.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { introspectSource, unsupportedTables } from "./introspect";

let legacy: TestDatabase;

beforeAll(async () => {
  legacy = await createTestDatabase("replident");
  await legacy.pool.query(`
    create table by_default (tenant_id int, id int, primary key (tenant_id, id));
    create table by_full (tenant_id int, id int, primary key (tenant_id, id));
    alter table by_full replica identity full;
    create table by_pk_index (tenant_id int, id int, constraint by_pk_index_pkey primary key (tenant_id, id));
    alter table by_pk_index replica identity using index by_pk_index_pkey;
    create table by_other_index (tenant_id int not null, id int, email text not null, primary key (tenant_id, id));
    create unique index by_other_index_email on by_other_index (tenant_id, email);
    alter table by_other_index replica identity using index by_other_index_email;
    create table by_nothing (tenant_id int, id int, primary key (tenant_id, id));
    alter table by_nothing replica identity nothing;
    create table no_key (tenant_id int, id int);`);
});

afterAll(async () => {
  await legacy?.drop();
});

describe("replica identity at movement start", () => {
  it("refuses what CDC cannot apply by, naming the table, the reason and the fix", async () => {
    const client: pg.PoolClient = await legacy.pool.connect();
    try {
      const schema = await introspectSource(client, "tenant_id");
      const problems = unsupportedTables(schema);
      const byTable = Object.fromEntries(problems.map((p) => [p.table, p.problem]));
      expect(Object.keys(byTable).sort()).toEqual([
        '"public"."by_nothing"',
        '"public"."by_other_index"',
        '"public"."no_key"',
      ]);
      expect(byTable['"public"."by_other_index"']).toContain(
        "REPLICA IDENTITY USING INDEX by_other_index_email",
      );
      expect(byTable['"public"."by_other_index"']).toContain("REPLICA IDENTITY DEFAULT");
      expect(byTable['"public"."by_nothing"']).toContain("REPLICA IDENTITY NOTHING");
      expect(schema.tables.find((t) => t.name === "by_pk_index")?.replicaIdentityIndex).toBeNull();
    } finally {
      client.release();
    }
  });
});
