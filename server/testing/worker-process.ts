// Real worker processes for crash tests and the bench: `node --import tsx server/worker.ts` (one
// process, so a SIGKILL really kills the engine, not a wrapper), environment inherited.
import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";

const ROOT = path.resolve(import.meta.dirname, "../..");

export interface WorkerProcess {
  pid: number;
  /** Resolves once the worker said it is running; rejects if it exits first. */
  ready: Promise<void>;
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** The process is still running. */
  alive(): boolean;
}

export function spawnWorker(
  options: { onLine?: (line: string) => void; nodeOptions?: string[] } = {},
): WorkerProcess {
  const args = [...(options.nodeOptions ?? []), "--import", "tsx", "server/worker.ts"];
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  let markReady = () => {};
  let failStart = (_: Error) => {};
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve;
    failStart = reject;
  });
  ready.catch(() => {}); // callers that never wait for it must not see an unhandled rejection
  const take = (d: Buffer) => {
    const text = d.toString();
    output += text;
    if (/Shardshift worker \d+ is running/.test(output)) markReady();
    if (options.onLine) for (const line of text.split("\n")) if (line.trim()) options.onLine(line);
  };
  child.stdout?.on("data", take);
  child.stderr?.on("data", take);
  const exited = new Promise<void>((resolve) =>
    child.once("exit", (code, signal) => {
      failStart(new Error(`The worker exited (${signal ?? code}) before it was running:\n${output}`));
      resolve();
    }),
  );
  return {
    pid: child.pid ?? -1,
    ready,
    output: () => output,
    alive: () => child.exitCode === null && child.signalCode === null,
    async kill(signal = "SIGKILL") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** Polls `check` until it returns a truthy value or the deadline passes (then throws with `what`). */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | null | undefined | false>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
