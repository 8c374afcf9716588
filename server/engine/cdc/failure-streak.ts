// When a CDC stream that keeps failing must stop being "running".
//
// A stream restarts after any error (the supervisor starts a new runner within a second): a network
// blip, a failover or a shard restart heals by itself. A cause that does not go away (a constraint
// on a shard that refuses a row, a dropped table, a shard that stays down) would otherwise restart
// it forever behind a "running" movement while the slot retains WAL. So the same failure, again and
// again with no progress in between, for long enough that a restart would have healed, fails the
// movement with its cause — an operator fixes it and resumes.
export const FAIL_AFTER_ATTEMPTS = 5;
export const FAIL_AFTER_MS = 15_000;

/** Two failures are "the same" when they differ only in numbers (pids, positions, counts). */
export function failureKey(error: unknown): string {
  const e = error as { code?: unknown; message?: unknown };
  const message = typeof e?.message === "string" ? e.message : String(error);
  return `${typeof e?.code === "string" ? e.code : ""}:${message.replace(/[0-9A-F]+\/[0-9A-F]+|\d+/g, "#")}`;
}

export class FailureStreak {
  private key: string | null = null;
  private count = 0;
  private since = 0;

  /** The stream made progress (applied a batch): whatever failed before has healed. */
  reset(): void {
    this.key = null;
    this.count = 0;
  }

  /** Records a failure; returns true once the movement should fail with it. */
  failed(error: unknown, now = Date.now()): boolean {
    const key = failureKey(error);
    if (key !== this.key) {
      this.key = key;
      this.count = 0;
      this.since = now;
    }
    this.count++;
    return this.count >= FAIL_AFTER_ATTEMPTS && now - this.since >= FAIL_AFTER_MS;
  }

  get attempts(): number {
    return this.count;
  }

  get firstAt(): number {
    return this.since;
  }
}
