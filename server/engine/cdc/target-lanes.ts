// One apply lane per target: each target applies its share of the stream as soon as its previous
// transaction committed, whatever the other targets are doing.
//
// Why: applied in lock-step, every batch waited for its slowest target, and the next batch waited
// for that one — so one target's slow commit (a core busy with a parity pass or a backfill beside
// it) held back every change of every target behind it, and a batch's lag was the worst of its
// targets' apply times. On a busy worker that maximum was most of the lag tail.
//
// Invariants:
// - Per target, changes keep the stream's order: a lane runs one transaction at a time, and what
//   arrives meanwhile waits in the lane and goes in its next transaction (several batches in one,
//   stamped with the last one's end LSN — a stamp covers every source transaction up to it).
// - A batch's targets are fixed when it is routed, so the confirmer learns it then, in stream
//   order: it confirms a batch only once every target that got a share of it holds, by its origin,
//   a stamp at or past the batch's (durable-confirm.ts). A lane's later, larger stamp covers it.
// - The first failure stops every lane: nothing queued after it runs (a later transaction's
//   stamp would move the target's origin past the failed one), and the loop ends with it once
//   every lane settled (none may still be inside a transaction when the sessions close).
// - Lanes hold a bounded number of statements: past it, the loop waits for the lane to take them.
import type { ApplyOptions, Statement } from "./apply";
import { applyWithRetry, type OriginStamp, type TargetAppliers } from "./target-applier";

/** A lane holding this many statements not yet sent makes the loop wait before reading more. */
export const LANE_MAX_WAITING_STATEMENTS = 20_000;

type LaneOptions = Omit<ApplyOptions, "sessionPrepared" | "originStamp" | "inTransaction">;

interface Waiting {
  statements: Statement[];
  stamp: OriginStamp;
  committed: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export class TargetLanes {
  private readonly waiting: (Waiting | null)[];
  private readonly running: (Promise<void> | null)[];
  /** The job each lane is running (its commit promise settles when it does). */
  private readonly runningJobs: (Waiting | null)[];
  private failure: { error: unknown } | null = null;

  constructor(
    private readonly appliers: TargetAppliers,
    private readonly options: LaneOptions,
    /** A lane committed a transaction (a target made progress). */
    private readonly onCommitted: () => void = () => {},
    /** The first failure: the loop may be waiting for the stream, and must end now. */
    private readonly onFailed: (error: unknown) => void = () => {},
  ) {
    this.waiting = appliers.all.map(() => null);
    this.running = appliers.all.map(() => null);
    this.runningJobs = appliers.all.map(() => null);
  }

  /**
   * Queues each target's share of a batch stamped `stamp`. Returns, per target that got a share,
   * the stamp the confirmer must see on it, and a promise that settles once every share committed.
   */
  enqueue(
    perTarget: readonly Statement[][],
    stamp: OriginStamp,
  ): { stamps: Map<number, bigint>; committed: Promise<void> } {
    this.throwIfFailed();
    const stamps = new Map<number, bigint>();
    const commits: Promise<void>[] = [];
    for (const [i, statements] of perTarget.entries()) {
      if (statements.length === 0) continue;
      let lane = this.waiting[i];
      if (!lane) {
        let resolve!: () => void;
        let reject!: (error: unknown) => void;
        const committed = new Promise<void>((res, rej) => {
          resolve = res;
          reject = rej;
        });
        committed.catch(() => {}); // the failure is the loop's, through throwIfFailed
        lane = { statements: [], stamp, committed, resolve, reject };
        this.waiting[i] = lane;
      }
      for (const s of statements) lane.statements.push(s);
      lane.stamp = stamp;
      stamps.set(i, stamp.lsn);
      commits.push(lane.committed);
      this.start(i);
    }
    const committed = Promise.all(commits).then(() => {});
    committed.catch(() => {});
    return { stamps, committed };
  }

  /** Settles once everything handed to the lanes so far committed (or a lane failed). */
  settled(): Promise<void> {
    const all = [...this.waiting, ...this.runningJobs].filter((j): j is Waiting => j !== null);
    const done = Promise.all(all.map((j) => j.committed)).then(() => {});
    done.catch(() => {});
    return done;
  }

  /** Waits while a lane holds more statements than it may; throws a lane's failure. */
  async room(): Promise<void> {
    for (let i = 0; i < this.waiting.length; i++) {
      while ((this.waiting[i]?.statements.length ?? 0) > LANE_MAX_WAITING_STATEMENTS) {
        this.throwIfFailed();
        const running = this.running[i];
        if (!running) break;
        await running;
      }
    }
    this.throwIfFailed();
  }

  /** Waits until every lane is idle (nothing running, nothing waiting); throws a lane's failure. */
  async drain(): Promise<void> {
    for (;;) {
      const busy = this.running.filter((r): r is Promise<void> => r !== null);
      if (busy.length === 0) break;
      await Promise.allSettled(busy);
    }
    this.throwIfFailed();
  }

  /** Whether a lane failed (the loop ends with that failure after drain()). */
  get failed(): boolean {
    return this.failure !== null;
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure.error;
  }

  private start(i: number): void {
    if (this.running[i] || this.failure) return;
    const job = this.waiting[i];
    if (!job) return;
    this.waiting[i] = null;
    this.runningJobs[i] = job;
    const target = this.appliers.all[i];
    if (!target) throw new Error(`no apply session for target ${i}`);
    this.running[i] = applyWithRetry(target, job.statements, job.stamp, this.options).then(
      () => {
        this.running[i] = null;
        this.runningJobs[i] = null;
        this.onCommitted();
        job.resolve();
        this.start(i);
      },
      (error: unknown) => {
        this.running[i] = null;
        this.runningJobs[i] = null;
        const first = this.failure === null;
        this.failure ??= { error };
        job.reject(error);
        // Nothing queued after a failure may run: its stamp would cover the failed transaction.
        for (const [j, waiting] of this.waiting.entries()) {
          waiting?.reject(error);
          this.waiting[j] = null;
        }
        if (first) this.onFailed(error);
      },
    );
  }
}
