// Adversarial (brk22): the lateness signal (replication-pressure.ts) against a clock that runs at
// another rate than ours. A batch's delay is our clock at apply minus the source's at commit; the
// least delay of the last minute cancels an offset between the two clocks, but not a skew: with
// legacy's clock running slow by r, every delay grows by r a second, and the least of the minute is
// up to a minute old, so a stream with no contention at all reads as late by r × 50–60 s for as long
// as the skew lasts. At the 3 ms default that took only 55–60 ppm (an undisciplined crystal, or NTP
// slewing an offset away at up to 500 ppm): background work beside it paused every chunk its
// longest and ran at a tenth of its rate, for ever.
//
// The cases drive a slot with explicit times. The break pass also ran a replication loop on a real
// target for 75 s at 300 ppm: background work beside it ran at 0.10× its rate before the fix and
// 0.99× after (0.97× with no skew). It is not kept here: its share of a wall-clock rate, on two
// cores shared with the rest of the suite, measured load as much as the fix (0.78 in one run).
import { afterEach, describe, expect, it } from "vitest";
import {
  DEFAULT_YIELD_LAG_MS,
  installPressureBuffer,
  newPressureBuffer,
  PressureSlot,
  replicationLatenessMs,
  watchPressure,
} from "./replication-pressure";

let unwatch: () => void = () => {};

afterEach(() => {
  unwatch();
  unwatch = () => {};
});

/** A slot in a fresh buffer that the background side reads (unwatched after each case). */
function watchedSlot(): PressureSlot {
  const buffer = newPressureBuffer();
  installPressureBuffer(buffer);
  unwatch = watchPressure(buffer);
  return PressureSlot.claim();
}

describe("a source clock running slow against ours, with no contention at all", () => {
  it("does not read as late (100 ppm, five minutes of batches every 10 ms)", () => {
    const slot = watchedSlot();
    const t0 = 1_000_000_000_000;
    const skew = 100e-6;
    let late = 0;
    let samples = 0;
    let worst = 0;
    for (let now = t0; now < t0 + 300_000; now += 10) {
      // Every batch takes 1 ms from commit to apply; the source's clock loses 100 µs a second.
      const commitOnSourceClock = now - 1 - skew * (now - t0);
      slot.applied(commitOnSourceClock, now);
      if (now - t0 >= 60_000) {
        const lateness = replicationLatenessMs(now);
        samples++;
        worst = Math.max(worst, lateness);
        if (lateness > DEFAULT_YIELD_LAG_MS) late++;
      }
    }
    slot.release();
    console.log(
      `skew 100 ppm: late in ${((late / samples) * 100).toFixed(0)}% of readings, at most ${worst} ms`,
    );
    expect(late / samples, `share of readings over ${DEFAULT_YIELD_LAG_MS} ms`).toBeLessThan(0.05);
  });

  it("still counts contention that follows a quiet spell, or comes and goes (no skew)", () => {
    const slot = watchedSlot();
    const t0 = 1_000_000_000_000;
    // 40 s on time, then 40 s of every batch 20 ms late, then 10 s on time and 10 s late again.
    const extra = (at: number) => (at < 40_000 ? 0 : at < 80_000 ? 20 : at < 90_000 ? 0 : 20);
    const seen: number[] = [];
    for (let now = t0; now < t0 + 100_000; now += 10) {
      slot.applied(now - 1 - extra(now - t0), now);
      if (extra(now - t0) > 0) seen.push(replicationLatenessMs(now));
    }
    slot.release();
    expect(Math.min(...seen)).toBe(20);
  });
});
