// Adversarial (brk22): the lateness signal (replication-pressure.ts) against a clock that runs at
// another rate than ours. A batch's delay is our clock at apply minus the source's at commit; the
// least delay of the last minute cancels an offset between the two clocks, but not a skew: with
// legacy's clock running slow by r, every delay grows by r a second, and the least of the minute is
// up to a minute old, so a stream with no contention at all reads as late by r × 50–60 s for as long
// as the skew lasts. At the 3 ms default that took only 55–60 ppm (an undisciplined crystal, or NTP
// slewing an offset away at up to 500 ppm): background work beside it paused every chunk its
// longest and ran at a tenth of its rate, for ever.
//
// The first case drives a slot with explicit times; the second a replication loop on a real target
// (without the skew, the same loop left the background work 0.97× its rate, lateness p50 1 ms).
import { afterEach, describe, expect, it } from "vitest";
import { createTestDatabase } from "../../testing/databases";
import { startPressureLoop } from "../../testing/pressure-loop";
import type { Statement } from "../cdc/apply";
import type { ChangeRouter } from "../cdc/change-router";
import type { SourceTransaction } from "../cdc/stream-reader";
import {
  DEFAULT_YIELD_LAG_MS,
  installPressureBuffer,
  newPressureBuffer,
  PressureSlot,
  replicationLatenessMs,
  watchPressure,
  yieldToReplication,
} from "./replication-pressure";
import { TokenBucket } from "./token-bucket";

let unwatch: () => void = () => {};

afterEach(() => {
  unwatch();
  unwatch = () => {};
});

describe("a source clock running slow against ours, with no contention at all", () => {
  it("does not read as late (100 ppm, five minutes of batches every 10 ms)", () => {
    const buffer = newPressureBuffer();
    installPressureBuffer(buffer);
    unwatch = watchPressure(buffer);
    const slot = PressureSlot.claim();
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
    const buffer = newPressureBuffer();
    installPressureBuffer(buffer);
    unwatch = watchPressure(buffer);
    const slot = PressureSlot.claim();
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

  it("leaves background work beside a real loop its rate (300 ppm, 75 s)", async () => {
    const target = await createTestDatabase("brk_pressure_skew");
    await target.pool.query("create table items (id bigint primary key)");
    const router = {
      route(transactions: SourceTransaction[], appliedUpTo: bigint[]) {
        const out: Statement[] = transactions
          .filter((t) => t.endLsn > (appliedUpTo[0] ?? 0n))
          .map((t) => ({
            name: "skew_ins",
            text: "insert into items (id) values ($1::bigint)",
            values: [t.xid],
          }));
        return [out];
      },
    } as unknown as ChangeRouter;
    const loop = await startPressureLoop({ url: target.url, origin: "shardshift_brk_skew", router });
    unwatch = () => {}; // the loop's close() unwatches its buffer
    const skew = 300e-6;
    const t0 = Date.now();
    let n = 0;
    // A source committing every 10 ms, its clock losing 300 µs a second against ours.
    const feeder = setInterval(() => {
      n++;
      const endLsn = BigInt(n * 16);
      const now = Date.now();
      loop.feed({
        transactions: [
          {
            xid: String(n),
            commitLsn: endLsn - 1n,
            endLsn,
            commitTimeIso: new Date(now - skew * (now - t0)).toISOString(),
            changes: [],
            continued: false,
          },
        ],
        confirmableLsn: endLsn,
      });
    }, 10);
    try {
      // Background work at 4,000 rows/s in chunks of 1/16 s, as the backfill charges it; measured
      // over the last 20 s of 75 (the least delay of the minute is by then 45–60 s old: 14–18 ms).
      const rate = 4_000;
      const bucket = new TokenBucket(rate);
      let rows = 0;
      let measuredFrom = 0;
      const lateness: number[] = [];
      while (Date.now() - t0 < 75_000) {
        if (measuredFrom === 0 && Date.now() - t0 >= 55_000) {
          measuredFrom = performance.now();
          rows = 0;
        }
        if (measuredFrom) lateness.push(replicationLatenessMs());
        const pace = await yieldToReplication({ limitMs: DEFAULT_YIELD_LAG_MS });
        await bucket.take(Math.ceil(250 / pace));
        rows += 250;
      }
      const share = rows / ((performance.now() - measuredFrom) / 1000) / rate;
      lateness.sort((a, b) => a - b);
      console.log(
        `skew 300 ppm: background at ${share.toFixed(2)}x its rate; lateness p50 ${lateness[Math.floor(lateness.length / 2)]} ms`,
      );
      expect(share).toBeGreaterThan(0.8);
    } finally {
      clearInterval(feeder);
      await loop.close();
      await target.drop();
    }
  }, 180_000);
});
