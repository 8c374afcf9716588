// Worker threads whose entry is a TypeScript module. The thread registers tsx (as the process does
// with --import tsx) and then imports the module: a plain `new Worker(file.ts)` fails on Node 20,
// where a worker resolves its entry before an --import hook is in place.
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { Worker, type WorkerOptions } from "node:worker_threads";

/** The thread's source (run with `eval: true`): tsx's ESM entry registered, then `entry` imported. */
export function tsThreadBootstrap(entry: URL): string {
  // The package's ESM entry (its CommonJS one imports a path that does not exist from a worker).
  const tsxRoot = path.dirname(createRequire(import.meta.url).resolve("tsx/package.json"));
  const tsx = pathToFileURL(path.join(tsxRoot, "dist/esm/api/index.mjs")).href;
  return `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); })`;
}

/** A worker thread running the TypeScript module `entry`. */
export function startTsThread(entry: URL, options: Omit<WorkerOptions, "eval"> = {}): Worker {
  return new Worker(tsThreadBootstrap(entry), { ...options, eval: true });
}
