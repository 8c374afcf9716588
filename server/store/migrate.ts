// Applies prisma/migrations/*/migration.sql to the control-plane database.
//
// Why our own runner: Prisma's CLI needs a native schema engine that it downloads at first use,
// and this project must install from the npm registry alone. We keep Prisma's bookkeeping table
// (`_prisma_migrations`, same columns and checksums), so `prisma migrate deploy` run elsewhere sees
// these migrations as applied and carries on from them.
//
// Invariants:
// - Migrations apply in folder-name order, each in its own transaction with its bookkeeping row.
// - Concurrent runners (demo, worker, tests) serialise on an advisory lock; the loser sees the
//   winner's rows and applies nothing twice.
// - An applied migration whose file changed since is refused: history is not rewritten silently.
import crypto from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import pg from "pg";

const MIGRATIONS_DIR = path.resolve(import.meta.dirname, "../../prisma/migrations");
const LOCK_KEY = 7_363_001; // any constant shared by every runner of this project

export interface MigrationFile {
  name: string;
  sql: string;
  checksum: string;
}

export async function readMigrations(dir = MIGRATIONS_DIR): Promise<MigrationFile[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true });
  const names = entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  return Promise.all(
    names.map(async (name) => {
      const sql = await fs.readFile(path.join(dir, name, "migration.sql"), "utf8");
      return { name, sql, checksum: crypto.createHash("sha256").update(sql).digest("hex") };
    }),
  );
}

const CREATE_BOOKKEEPING = `
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;

export interface MigrateResult {
  applied: string[];
  alreadyApplied: string[];
}

export async function migrateControlPlane(connectionString: string): Promise<MigrateResult> {
  const migrations = await readMigrations();
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    await client.query("select pg_advisory_lock($1)", [LOCK_KEY]);
    await client.query(CREATE_BOOKKEEPING);
    const { rows } = await client.query<{
      migration_name: string;
      checksum: string;
      finished_at: Date | null;
    }>(`select migration_name, checksum, finished_at from "_prisma_migrations" where rolled_back_at is null`);
    const done = new Map(rows.map((r) => [r.migration_name, r]));
    const result: MigrateResult = { applied: [], alreadyApplied: [] };
    for (const migration of migrations) {
      const previous = done.get(migration.name);
      if (previous?.finished_at) {
        if (previous.checksum !== migration.checksum) {
          throw new Error(
            `Migration ${migration.name} was applied, but its migration.sql has changed since. ` +
              "Never edit an applied migration: restore the file and add a new migration instead.",
          );
        }
        result.alreadyApplied.push(migration.name);
        continue;
      }
      if (previous) {
        throw new Error(
          `Migration ${migration.name} started earlier but never finished. Inspect the database, fix it by hand, ` +
            `then mark it rolled back (update "_prisma_migrations" set rolled_back_at = now() where migration_name = '${migration.name}').`,
        );
      }
      await client.query("begin");
      try {
        await client.query(migration.sql);
        await client.query(
          `insert into "_prisma_migrations" (id, checksum, migration_name, started_at, finished_at, applied_steps_count)
           values ($1, $2, $3, now(), now(), 1)`,
          [crypto.randomUUID(), migration.checksum, migration.name],
        );
        await client.query("commit");
      } catch (error) {
        await client.query("rollback");
        throw new Error(
          `Migration ${migration.name} failed and was rolled back: ${(error as Error).message}`,
        );
      }
      result.applied.push(migration.name);
    }
    return result;
  } finally {
    await client.query("select pg_advisory_unlock($1)", [LOCK_KEY]).catch(() => {});
    await client.end();
  }
}
