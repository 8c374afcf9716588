// Undo steps for everything the benchmark starts, run last-in first-out exactly once: from the
// normal end, from an error, or from Ctrl-C — whichever comes first. A failing step is reported
// and the rest still run, so one stuck server never leaves the others running.
export class CleanupStack {
  private readonly steps: { label: string; run: () => Promise<void> }[] = [];
  private running: Promise<void> | null = null;
  /** True once interrupted (Ctrl-C): steps may skip checks that need the servers still up. */
  aborted = false;

  constructor(private readonly log: (line: string) => void) {}

  push(label: string, run: () => Promise<void>): void {
    this.steps.push({ label, run });
  }

  /** Runs the steps because of an interruption rather than the normal end. */
  abort(): Promise<void> {
    this.aborted = true;
    return this.run();
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      for (let step = this.steps.pop(); step; step = this.steps.pop()) {
        try {
          await step.run();
        } catch (error) {
          this.log(`warning: clean-up step "${step.label}" failed: ${(error as Error).message}`);
        }
      }
    })();
    return this.running;
  }
}
