// Replication first: the CDC thread asks the OS to schedule it ahead of the worker's other work.
//
// Why: on a worker whose cores are full — a parity pass hashing on legacy and the shards, another
// plan's backfill copying, all beside replication — every change waits its turn for a core at each
// hop of its way (our thread reading the stream, building the apply, reading the target's answer).
// Those waits were most of a busy worker's lag tail: the bench's busy worker measured 40.8 ms p99
// at normal priority and 17.6–20.2 ms with this thread at nice -10, against 10.5–21 ms on a quiet
// worker. The thread mostly waits on the network, so a higher priority takes little from the rest:
// it is served first when it has something to do.
//
// Raising a thread's priority needs the privilege to (root, or CAP_SYS_NICE, or an RLIMIT_NICE that
// allows it). Without it the thread runs at the worker's priority and says so once: replication is
// as correct, its lag tail longer when the worker is busy.
import os from "node:os";

/** The default: ahead of normal work, well short of the range the system's own daemons use. */
export const CDC_THREAD_NICE = -10;

export type PriorityOutcome =
  | { applied: true; nice: number }
  | { applied: false; nice: number; reason: string };

/** The nice value the CDC thread asks for: SHARDSHIFT_CDC_NICE (-20…19), or the default. */
export function cdcThreadNice(env: Record<string, string | undefined> = process.env): number {
  const text = env.SHARDSHIFT_CDC_NICE?.trim();
  if (!text) return CDC_THREAD_NICE;
  const nice = Number(text);
  if (!Number.isInteger(nice) || nice < -20 || nice > 19) {
    throw new Error(
      `SHARDSHIFT_CDC_NICE must be an integer from -20 to 19 (got "${text}"); 0 keeps the CDC thread at the worker's priority.`,
    );
  }
  return nice;
}

/**
 * Sets the calling thread's nice value (Linux: setpriority on thread id 0 is the calling thread,
 * not the process). Never throws: the outcome says whether it took.
 */
export function setThisThreadNice(nice: number): PriorityOutcome {
  try {
    os.setPriority(0, nice);
    return { applied: true, nice };
  } catch (error) {
    const code = (error as { code?: string }).code ?? "";
    return {
      applied: false,
      nice,
      reason:
        /EACCES|EPERM/.test(code) || /EACCES|EPERM|permission/i.test((error as Error).message)
          ? "the worker lacks the privilege (run it as root or grant CAP_SYS_NICE)"
          : (error as Error).message,
    };
  }
}

/** What the CDC thread logs once at start. */
export function describePriority(outcome: PriorityOutcome): string {
  if (outcome.applied)
    return `CDC thread scheduled at nice ${outcome.nice} (replication ahead of the worker's other work)`;
  return (
    `CDC thread stays at the worker's priority: nice ${outcome.nice} was refused — ${outcome.reason}. ` +
    "Replication is as correct; on a busy worker its lag tail is longer. Set SHARDSHIFT_CDC_NICE=0 to silence this."
  );
}
