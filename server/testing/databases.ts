// Each test owns its data: a fresh database on the shared test server, dropped afterwards.
import crypto from "node:crypto";
import pg from "pg";
import { inject } from "vitest";

export interface TestDatabase {
  name: string;
  url: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

export function testServerUrl(database = "postgres"): string {
  const url = new URL(inject("pgAdminUrl"));
  url.pathname = `/${database}`;
  return url.toString();
}

export async function createTestDatabase(prefix: string): Promise<TestDatabase> {
  const name = `${prefix.replace(/[^a-z0-9_]/gi, "_").toLowerCase()}_${crypto.randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: testServerUrl() });
  await admin.connect();
  try {
    await admin.query(`create database ${admin.escapeIdentifier(name)}`);
  } finally {
    await admin.end();
  }
  const url = testServerUrl(name);
  const pool = new pg.Pool({ connectionString: url, max: 8 });
  // drop() ends the pool and then drops the database WITH (FORCE): a connection still closing may
  // get the server's "terminating connection" first, which must not surface as an unhandled error.
  pool.on("error", () => {});
  return {
    name,
    url,
    pool,
    async drop() {
      // Slots are per server and block DROP DATABASE: never leave one behind, whatever happened.
      await pool
        .query(
          "select pg_drop_replication_slot(slot_name) from pg_replication_slots where database = current_database() and not active",
        )
        .catch(() => {});
      await pool.end();
      const client = new pg.Client({ connectionString: testServerUrl() });
      await client.connect();
      try {
        await client.query(`drop database if exists ${client.escapeIdentifier(name)} with (force)`);
      } finally {
        await client.end();
      }
    },
  };
}
