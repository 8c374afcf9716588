// A stream reader for replication-loop tests: it hands the loop what `feed` gives it, in order, and
// waits quietly in between until stopped (a real source, minus the server).
import type { SourceBatch, StreamReader } from "../engine/cdc/stream-reader";

export function fakeReader(): { reader: StreamReader; feed: (batch: SourceBatch) => void } {
  const queue: SourceBatch[] = [];
  let wake: () => void = () => {};
  let stopped = false;
  const reader = {
    async next() {
      for (;;) {
        if (stopped) return null;
        const batch = queue.shift();
        if (batch) return batch;
        await new Promise<void>((r) => {
          wake = r;
        });
      }
    },
    async stop() {
      stopped = true;
      wake();
    },
    async readRow() {
      return null;
    },
  } as unknown as StreamReader;
  return {
    reader,
    feed: (batch) => {
      queue.push(batch);
      wake();
    },
  };
}
