// A running replication composition as its owner sees it (the supervisor, the CDC thread, a test):
// whether it ended, why, and whether it made progress — the same handle for every direction.
export interface CdcRunner {
  /** True once the runner ended (lost the lock, the movement stopped, or an error); the supervisor replaces it. */
  readonly finished: boolean;
  /** Why it ended, when an error ended it (the supervisor counts repeats: failure-streak.ts). */
  readonly failure: unknown;
  /** A target committed something it applied: whatever failed before has healed. */
  readonly progressed: boolean;
  /** Settles once the runner ended, whatever ended it. */
  readonly ended: Promise<void>;
  stop(): Promise<void>;
}

/** What a composition's body sees of its handle. */
export interface RunnerControl {
  /** stop() was called: end at the next batch. */
  readonly stopping: boolean;
  /** What stop() calls to wake a body waiting for the stream (StreamReader.stop). */
  onStop(wake: () => Promise<void>): void;
  /** A target committed something. */
  progressed(): void;
}

/** Runs `body` as a CdcRunner; an error that ends it is logged and kept as its failure. */
export function startRunner(
  body: (control: RunnerControl) => Promise<void>,
  log: (message: string) => void,
): CdcRunner {
  let finished = false;
  let stopping = false;
  let failure: unknown = null;
  let progressed = false;
  let wake: (() => Promise<void>) | null = null;
  const control: RunnerControl = {
    get stopping() {
      return stopping;
    },
    onStop(fn) {
      wake = fn;
    },
    progressed() {
      progressed = true;
    },
  };
  const ended = body(control)
    .catch((error) => {
      failure = error;
      log((error as Error).message);
    })
    .finally(() => {
      finished = true;
    });
  return {
    get finished() {
      return finished;
    },
    get failure() {
      return failure;
    },
    get progressed() {
      return progressed;
    },
    ended,
    async stop() {
      stopping = true;
      await wake?.().catch(() => {});
      await ended;
    },
  };
}
