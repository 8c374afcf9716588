// Where a rollback's time goes, phase by phase (prepare, freeze, fence, drain, flip, finish, and
// the parts of the longer ones, in brackets before the phase they belong to), logged as one line when the run ends: the bench's `--verbose`
// prints the worker's log, so the profile of a slow trip is there without a debugger. Costs a
// clock read per phase, no round trip.
export class RollbackSpans {
  private readonly started = performance.now();
  private last = this.started;
  private readonly parts: string[] = [];

  /** Closes the span that began at the previous mark (or the start) under `name`. */
  mark(name: string): void {
    const now = performance.now();
    this.parts.push(`${name} ${Math.round(now - this.last)}`);
    this.last = now;
  }

  /** Times `fn` as a sub-span of the current phase (does not move the phase's start). */
  async time<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const from = performance.now();
    try {
      return await fn();
    } finally {
      this.parts.push(`(${name} ${Math.round(performance.now() - from)})`);
    }
  }

  /** Records a sub-span measured elsewhere (e.g. the wait for a transaction to begin). */
  add(name: string, ms: number): void {
    this.parts.push(`(${name} ${Math.round(ms)})`);
  }

  toString(): string {
    return `spans (ms): ${this.parts.join(" ")}; total ${Math.round(performance.now() - this.started)}`;
  }
}
