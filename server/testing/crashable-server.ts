// A PostgreSQL server of a test's own that the test may crash (`pg_ctl stop -m immediate`: no
// shutdown checkpoint, unwritten WAL lost, as in a power cut of the server process) and start again
// on the same data directory. Durable settings (fsync on), unlike the shared ephemeral test server.
//
// Ports come from SHARDSHIFT_TEST_EXTRA_PG_PORT (default 26640; tests use 26640–26659), offset by
// the caller, so checkouts testing side by side do not collide.
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { postgresBinaries } from "../embedded/binary-cache";
import { type EmbeddedServer, startEmbeddedServer } from "../embedded/embedded-server";

export interface CrashableServer {
  port: number;
  url(database?: string): string;
  /** Kills the server without a shutdown checkpoint (pg_ctl -m immediate). */
  crash(): Promise<void>;
  /**
   * Freezes (SIGSTOP) or thaws (SIGCONT) the server and every backend of it: a hung server that
   * accepts connections and never answers. Only this server's own processes are signalled.
   */
  freeze(frozen: boolean): Promise<void>;
  /** Starts it again on the same data directory (crash recovery runs); nothing if it runs. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function postgresIds(): Promise<{ uid: number; gid: number } | Record<string, never>> {
  if (process.getuid?.() !== 0) return {};
  const passwd = await fs.readFile("/etc/passwd", "utf8");
  const [, , uid, gid] =
    passwd
      .split("\n")
      .find((l) => l.startsWith("postgres:"))
      ?.split(":") ?? [];
  return { uid: Number(uid), gid: Number(gid) };
}

export function extraTestPort(offset: number): number {
  return Number(process.env.SHARDSHIFT_TEST_EXTRA_PG_PORT ?? 26_640) + offset;
}

export async function startCrashableServer(name: string, portOffset: number): Promise<CrashableServer> {
  const port = extraTestPort(portOffset);
  const rootDir = path.join(os.tmpdir(), `shardshift-crash-${process.pid}-${port}`);
  const password = crypto.randomBytes(12).toString("hex");
  let server: EmbeddedServer = await startEmbeddedServer({ name, port, rootDir, password });
  const dataDir = server.dataDir;
  let running = true;
  return {
    port,
    url: (database) => server.url(database),
    async crash() {
      const ids = await postgresIds();
      // The binaries the server runs from: as root a cache `postgres` can reach (binary-cache.ts).
      const { pg_ctl } = await postgresBinaries();
      await new Promise<void>((resolve, reject) => {
        const child = spawn(pg_ctl, ["stop", "-D", dataDir, "-m", "immediate", "-w"], {
          ...ids,
          stdio: "ignore",
        });
        child.once("error", reject);
        child.once("exit", (code) =>
          code === 0 ? resolve() : reject(new Error(`pg_ctl stop -m immediate exited with ${code}`)),
        );
      });
      running = false;
    },
    async freeze(frozen: boolean) {
      const postmaster = Number(
        (await fs.readFile(path.join(dataDir, "postmaster.pid"), "utf8")).split("\n")[0],
      );
      const children: number[] = [];
      for (const entry of await fs.readdir("/proc")) {
        if (!/^\d+$/.test(entry)) continue;
        const stat = await fs.readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
        // Field 4 (after the parenthesised command name) is the parent pid.
        const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        if (parent === postmaster) children.push(Number(entry));
      }
      const signal = frozen ? "SIGSTOP" : "SIGCONT";
      for (const pid of [postmaster, ...children]) {
        try {
          process.kill(pid, signal);
        } catch {
          // gone meanwhile
        }
      }
    },
    async restart() {
      if (running) return;
      server = await startEmbeddedServer({ name, port, rootDir, password });
      running = true;
    },
    async stop() {
      if (running) await server.stop();
      running = false;
      await fs.rm(rootDir, { recursive: true, force: true }).catch(() => {});
    },
  };
}
