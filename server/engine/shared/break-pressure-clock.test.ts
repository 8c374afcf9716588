// Breaking replication-pressure.ts with the wall clock stepping back (NTP stepping a clock that ran
// fast, a VM restored or migrated, an operator setting the time). The signal's readings are wall
// clock times (both threads share it), but how long a chunk pauses and how its pace moves are
// spans of time, and a span measured across a step comes out negative or an hour long:
// - a chunk paused while the clock steps back waited until the clock caught up again (the bound
//   was a wall clock time), for as long as a reading still looked late;
// - a reading written before the step looked fresh until the clock caught up with it, so a quiet
//   stream's last late batch held every chunk back for the step's length;
// - the pace recovered by a negative span: it went below zero, and a chunk charged `rows / pace`
//   to its token bucket was credited tokens instead, copying past the operator's rate.
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  installPressureBuffer,
  newPressureBuffer,
  PressureSlot,
  replicationLatenessMs,
  watchPressure,
  yieldToReplication,
} from "./replication-pressure";

const HOUR = 3_600_000;
let unwatch: () => void = () => {};

function fresh(): PressureSlot {
  unwatch();
  const buffer = newPressureBuffer();
  installPressureBuffer(buffer);
  unwatch = watchPressure(buffer);
  return PressureSlot.claim();
}

/** From now on the wall clock reads `ms` earlier than it did. */
function stepBack(ms: number): void {
  const real = Date.now.bind(Date);
  vi.spyOn(Date, "now").mockImplementation(() => real() - ms);
}

afterEach(() => {
  vi.restoreAllMocks();
  unwatch();
  unwatch = () => {};
});

describe("background work across a step back of the wall clock", () => {
  it("keeps its pace between the least and whole", async () => {
    const slot = fresh();
    expect(await yieldToReplication({ limitMs: 5 })).toBe(1);
    stepBack(HOUR);
    const pace = await yieldToReplication({ limitMs: 5 });
    expect(pace).toBeGreaterThanOrEqual(0.1);
    expect(pace).toBeLessThanOrEqual(1);
    slot.release();
  });

  it("does not count a reading written before the step as fresh", () => {
    const slot = fresh();
    const now = Date.now();
    slot.applied(now - 1, now);
    slot.applied(now - 300, now);
    expect(replicationLatenessMs(now)).toBe(299);
    // The stream went quiet; the clock stepped back an hour.
    expect(replicationLatenessMs(now - HOUR)).toBe(0);
    slot.release();
  });

  it("pauses a chunk at most the pause when the clock steps back during it", async () => {
    const slot = fresh();
    // A quiet stream's last batch ran late (its reading stays fresh for the first 100 ms).
    const now = Date.now();
    slot.applied(now - 1, now);
    slot.applied(now - 300, now);
    const started = performance.now();
    let waited: number | null = null;
    const chunk = yieldToReplication({ limitMs: 5, maxPauseMs: 250 }).then(() => {
      waited = performance.now() - started;
    });
    await new Promise((r) => setTimeout(r, 20));
    stepBack(HOUR);
    // Read after the step, a batch still waits to commit: replication runs late by either clock.
    slot.held(Date.now() - 1_000);
    await Promise.race([chunk, new Promise((r) => setTimeout(r, 2_000))]);
    expect(waited).not.toBeNull();
    expect(waited as unknown as number).toBeLessThan(1_000);
    slot.release();
  });
});
