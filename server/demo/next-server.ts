// Builds (when the sources changed) and serves the dashboard with `next start`, as a child process.
// We start node_modules/.bin/next directly and stop it by PID: killing an `npx` wrapper would leave
// next-server holding the port.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";

const ROOT = path.resolve(import.meta.dirname, "../..");
const NEXT_BIN = path.join(ROOT, "node_modules", ".bin", "next");
const SOURCES = [
  "app",
  "components",
  "server",
  "next.config.ts",
  "package.json",
  "postcss.config.mjs",
  "tsconfig.json",
];

async function newestSourceMtime(entry: string): Promise<number> {
  const full = path.join(ROOT, entry);
  if (!existsSync(full)) return 0;
  const stat = await fs.stat(full);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = stat.mtimeMs;
  for (const child of await fs.readdir(full)) {
    if (child === "generated" || child === "node_modules") continue;
    newest = Math.max(newest, await newestSourceMtime(path.join(entry, child)));
  }
  return newest;
}

export async function buildIsCurrent(): Promise<boolean> {
  const buildId = path.join(ROOT, ".next", "BUILD_ID");
  if (!existsSync(buildId)) return false;
  const built = statSync(buildId).mtimeMs;
  for (const entry of SOURCES) if ((await newestSourceMtime(entry)) > built) return false;
  return true;
}

function run(args: string[], env: NodeJS.ProcessEnv, log: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(NEXT_BIN, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout?.on("data", (d: Buffer) => log(d.toString().trimEnd()));
    child.stderr?.on("data", (d: Buffer) => log(d.toString().trimEnd()));
    child.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`next ${args[0]} exited with code ${code}`)),
    );
  });
}

export async function buildDashboard(log: (line: string) => void): Promise<void> {
  await run(["build"], { ...process.env, NEXT_TELEMETRY_DISABLED: "1", NODE_ENV: "production" }, log);
}

export interface DashboardServer {
  url: string;
  stop(): Promise<void>;
}

export async function serveDashboard(
  port: number,
  env: Record<string, string>,
  log: (line: string) => void,
): Promise<DashboardServer> {
  // Our own HTTP server in front of Next.js: it resolves each client's address from the socket
  // (server/http/serve.ts), which `next start` cannot give route handlers.
  const serve = [
    path.join(ROOT, "server", "http", "serve.ts"),
    "--port",
    String(port),
    "--hostname",
    "0.0.0.0",
  ];
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", ...serve], {
    cwd: ROOT,
    env: { ...process.env, ...env, NEXT_TELEMETRY_DISABLED: "1", NODE_ENV: "production" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (d: Buffer) => log(d.toString().trimEnd()));
  child.stderr?.on("data", (d: Buffer) => log(d.toString().trimEnd()));
  const url = `http://localhost:${port}`;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // Ready when it answers; a deadline instead of a guess.
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(
        `The dashboard server exited (code ${child.exitCode}) before it answered on port ${port}.`,
      );
    try {
      const response = await fetch(`${url}/sign-in`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`The dashboard did not answer on ${url} within 60 s.`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    url,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
