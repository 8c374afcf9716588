// An opt-in diagnostic for rare interleavings (issue 11's crash-test failure): with
// SHARDSHIFT_DEBUG_TRACE naming a file, the engine appends one line per chunk landing (table,
// shard, snapshot, key range, skipped keys, the shard transaction's xid), per CDC apply (target,
// origin stamp, every key it wrote with its legacy xid), per apply session opened (the origin's
// position) and per table done, and movement.test.ts adds its kills, the crash and, on a
// difference, the rows' xmin on the shard. Matching an extra row's xmin and key against it says
// which writer put the row there and what the guard knew then. Off (one check) when unset.
import fs from "node:fs";

const file = process.env.SHARDSHIFT_DEBUG_TRACE;

export const debugTraceOn = Boolean(file);

/** Appends `line` (built only when tracing is on) with the time and process id. */
export function debugTrace(line: string | (() => string)): void {
  if (!file) return;
  try {
    fs.appendFileSync(
      file,
      `${new Date().toISOString()} ${process.pid} ${typeof line === "string" ? line : line()}\n`,
    );
  } catch {
    // A diagnostic never fails the engine.
  }
}
