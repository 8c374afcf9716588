// The confirm part of replication: tells the slot only what every target durably holds.
//
// Batches are recorded as applied (with the origin stamp each target's transaction carried); a
// periodic check reads each target's flushed origin position and confirms, in order, every batch
// that is durable on all the targets it wrote to (durable-confirm.ts has the argument). Reading an
// origin's progress flushes that target, so a batch is confirmed within one period. The check never
// runs on the apply path: a slow target delays confirmation, not apply.
import { DurableConfirmer } from "./durable-confirm";

export interface ConfirmerOptions {
  /** The flushed origin position of target `ordinal` (readOriginProgress on any connection to it). */
  durableOf: (ordinal: number) => Promise<bigint>;
  /** Tells the slot (StreamReader.confirm). */
  confirm: (lsn: bigint) => void;
  periodMs?: number;
  log: (message: string) => void;
}

export class Confirmer {
  private readonly durable: DurableConfirmer;
  private readonly timer: NodeJS.Timeout;
  private confirmedLsn = 0n;

  constructor(options: ConfirmerOptions) {
    this.durable = new DurableConfirmer(options.durableOf, (lsn) => {
      options.confirm(lsn);
      this.confirmedLsn = lsn;
    });
    this.timer = setInterval(() => {
      this.durable.check().catch((error) => options.log(`confirm: ${(error as Error).message}`));
    }, options.periodMs ?? 200);
  }

  /**
   * A batch ending at source position `lsn` goes to the targets in `stamps` (empty: wrote nothing);
   * it is confirmed only once `committed` resolved (DurableConfirmer.applied).
   */
  applied(lsn: bigint, stamps: ReadonlyMap<number, bigint>, committed?: Promise<void>): void {
    this.durable.applied(lsn, stamps, committed);
  }

  /** The last position confirmed to the slot. */
  get confirmed(): bigint {
    return this.confirmedLsn;
  }

  /** Confirms what is durable now, once more, and stops checking. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.durable.check().catch(() => {});
  }
}
