// A worker thread for thread-priority.test.ts: asks for a nice value the way the CDC thread does,
// and reports what it got and what this thread's nice value now is.
import fs from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { setThisThreadNice } from "../engine/cdc/thread-priority";

/** The nice value of a thread, from /proc (field 19 of stat, counted after the command's parentheses). */
export function niceOf(statPath: string): number {
  const stat = fs.readFileSync(statPath, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[16]);
}

if (parentPort) {
  const outcome = setThisThreadNice((workerData as { nice: number }).nice);
  parentPort.postMessage({ outcome, threadNice: niceOf("/proc/thread-self/stat") });
}
