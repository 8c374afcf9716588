// The lateness signal and the background pace (replication-pressure.ts), without servers: what a
// slot publishes, what the reader makes of it, and how long a chunk of background work waits.
// replication-pressure-loop.test.ts drives the same signal from a replication loop on a real target.
import { afterEach, describe, expect, it } from "vitest";
import {
  CONTENTION_CEILING_MS,
  installPressureBuffer,
  newPressureBuffer,
  PressureSlot,
  replicationLatenessMs,
  watchPressure,
  yieldLagMs,
  yieldToReplication,
} from "./replication-pressure";

let unwatch: () => void = () => {};

function fresh(): void {
  unwatch();
  const buffer = newPressureBuffer();
  installPressureBuffer(buffer);
  unwatch = watchPressure(buffer);
}

afterEach(() => {
  unwatch();
  unwatch = () => {};
});

describe("the lateness signal", () => {
  it("is each batch's delay over the least delay of the last minute, which cancels a clock offset", () => {
    fresh();
    const slot = PressureSlot.claim();
    const now = 1_000_000_000_000;
    // The source's clock runs 800 ms behind ours: every delay looks 800 ms longer.
    slot.applied(now - 801, now);
    expect(replicationLatenessMs(now)).toBe(0);
    slot.applied(now + 5 - 803, now + 5);
    expect(replicationLatenessMs(now + 5)).toBe(2);
    slot.applied(now + 10 - 830, now + 10);
    expect(replicationLatenessMs(now + 10)).toBe(29);
    slot.release();
  });

  it("forgets the least delay after a minute, so a clock step does not leave every batch late", () => {
    fresh();
    const slot = PressureSlot.claim();
    const t0 = 1_000_000_000_000;
    slot.applied(t0 - 1, t0);
    // The source's clock stepped: every delay is 50 ms longer from now on.
    const later = t0 + 61_000;
    slot.applied(later - 51, later);
    expect(replicationLatenessMs(later)).toBe(0);
    slot.release();
  });

  it("counts a reading only while fresh: a stream gone quiet raises nothing", () => {
    fresh();
    const slot = PressureSlot.claim();
    const now = 1_000_000_000_000;
    slot.applied(now - 1, now);
    slot.applied(now - 40, now);
    expect(replicationLatenessMs(now + 50)).toBe(39);
    expect(replicationLatenessMs(now + 500)).toBe(0);
    slot.release();
  });

  it("counts how long the oldest batch read has waited to commit, whatever the source's clock", () => {
    fresh();
    const slot = PressureSlot.claim();
    const now = 1_000_000_000_000;
    slot.held(now - 120);
    expect(replicationLatenessMs(now)).toBe(120);
    slot.held(0);
    expect(replicationLatenessMs(now)).toBe(0);
    slot.release();
  });

  it("counts only the wait beyond the least time a batch takes to commit (a target 20 ms away)", () => {
    fresh();
    const slot = PressureSlot.claim();
    const now = Date.now();
    // Every batch takes at least a 20 ms round trip to its target.
    slot.committed(now - 20, now);
    slot.committed(now - 26, now);
    slot.held(now - 20);
    expect(replicationLatenessMs(now)).toBe(0);
    slot.held(now - 45);
    expect(replicationLatenessMs(now)).toBe(25);
    slot.held(0);
    expect(replicationLatenessMs(now)).toBe(0);
    slot.release();
  });

  it("takes the latest of every slot, and a released slot counts for nothing", () => {
    fresh();
    const a = PressureSlot.claim();
    const b = PressureSlot.claim();
    const now = 1_000_000_000_000;
    a.held(now - 10);
    b.held(now - 70);
    expect(replicationLatenessMs(now)).toBe(70);
    b.release();
    expect(replicationLatenessMs(now)).toBe(10);
    a.release();
    expect(replicationLatenessMs(now)).toBe(0);
  });

  it("counts nothing past the ceiling: a stream seconds behind has a backlog or a stuck target", () => {
    fresh();
    const catchingUp = PressureSlot.claim();
    const contended = PressureSlot.claim();
    const now = 1_000_000_000_000;
    // A backlog: the batch applied now committed on the source 4 s ago, against 2 ms usually.
    catchingUp.applied(now - 2 - 60_000, now - 60_000);
    catchingUp.applied(now - 4_000, now);
    catchingUp.held(now - 3_000);
    expect(replicationLatenessMs(now)).toBe(0);
    // A stream on a contended core beside it still counts.
    contended.held(now - CONTENTION_CEILING_MS);
    expect(replicationLatenessMs(now)).toBe(CONTENTION_CEILING_MS);
    contended.held(now - 30);
    expect(replicationLatenessMs(now)).toBe(30);
    catchingUp.release();
    contended.release();
  });

  it("tells a stream catching up a backlog from one falling further behind, a second apart", () => {
    // Both streams read each batch seconds after the source committed it. The one whose read lag
    // shrinks catches up a backlog and counts nothing; the one whose read lag grows falls behind
    // (the source writes faster than it applies, as under contention) and counts what its oldest
    // batch waits. Driven by timestamps, not a live loop: on two shared cores a live source paced
    // this in 1.7–100% of samples (the old real-loop case in break-yield-backlog.test.ts).
    fresh();
    const catchingUp = PressureSlot.claim();
    const fallingBehind = PressureSlot.claim();
    const start = 1_000_000_000_000;
    const seen = { catchingUp: [] as number[], fallingBehind: [] as number[] };
    for (let i = 0; i <= 15; i++) {
      const readAt = start + i * 200;
      catchingUp.held(readAt, readAt - (6_000 - i * 300));
      const now = readAt + 30; // each batch has waited 30 ms for its commit when read off
      seen.catchingUp.push(replicationLatenessMs(now));
      catchingUp.held(0);
      fallingBehind.held(readAt, readAt - (1_500 + i * 300));
      seen.fallingBehind.push(replicationLatenessMs(now));
      fallingBehind.held(0);
    }
    expect(seen.catchingUp).toEqual(seen.catchingUp.map(() => 0));
    // Judged once a batch read a second before is there to compare with (the 6th, 1,000 ms on).
    expect(seen.fallingBehind.slice(5)).toEqual(seen.fallingBehind.slice(5).map(() => 30));
    catchingUp.release();
    fallingBehind.release();
  });

  it("counts a thread's slots only where its buffer is watched", () => {
    unwatch();
    installPressureBuffer(newPressureBuffer());
    const slot = PressureSlot.claim();
    slot.held(Date.now() - 500);
    expect(replicationLatenessMs()).toBe(0);
    slot.release();
  });
});

describe("yieldToReplication", () => {
  it("does not wait while replication is on time, and waits while it is late, at most the pause", async () => {
    fresh();
    const slot = PressureSlot.claim();
    expect(await yieldToReplication({ limitMs: 5 })).toBe(1);
    slot.held(Date.now() - 200);
    const started = performance.now();
    const pace = await yieldToReplication({ limitMs: 5, maxPauseMs: 60 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(55);
    expect(pace).toBeLessThan(1);
    slot.release();
  });

  it("ends the wait when replication catches up", async () => {
    fresh();
    const slot = PressureSlot.claim();
    slot.held(Date.now() - 200);
    let done = false;
    const waiting = yieldToReplication({ limitMs: 5, maxPauseMs: 60_000 }).then(() => {
      done = true;
    });
    await new Promise((r) => setTimeout(r, 30));
    expect(done).toBe(false);
    slot.held(0);
    await waiting;
    slot.release();
  });

  it("never waits when turned off (limit 0)", async () => {
    fresh();
    const slot = PressureSlot.claim();
    slot.held(Date.now() - 200);
    expect(await yieldToReplication({ limitMs: 0, maxPauseMs: 60_000 })).toBe(1);
    slot.release();
  });

  it("lowers the pace while replication is late and restores it once it is on time", async () => {
    fresh();
    const slot = PressureSlot.claim();
    slot.held(Date.now() - 200);
    let pace = 1;
    for (let i = 0; i < 4; i++) {
      pace = await yieldToReplication({ limitMs: 5, maxPauseMs: 60 });
    }
    expect(pace).toBeLessThanOrEqual(0.25);
    slot.held(0);
    const deadline = Date.now() + 5_000;
    while (pace < 1) {
      if (Date.now() > deadline) throw new Error(`the pace stayed at ${pace}`);
      pace = await yieldToReplication({ limitMs: 5 });
      await new Promise((r) => setTimeout(r, 50));
    }
    slot.release();
  });
});

describe("SHARDSHIFT_YIELD_LAG_MS", () => {
  it("is 3 ms by default, and refuses what is not a whole number of ms up to 10,000", () => {
    expect(yieldLagMs({})).toBe(3);
    expect(yieldLagMs({ SHARDSHIFT_YIELD_LAG_MS: "5" })).toBe(5);
    expect(yieldLagMs({ SHARDSHIFT_YIELD_LAG_MS: "0" })).toBe(0);
    expect(yieldLagMs({ SHARDSHIFT_YIELD_LAG_MS: " 20 " })).toBe(20);
    for (const bad of ["-1", "2.5", "ten", "10001"]) {
      expect(() => yieldLagMs({ SHARDSHIFT_YIELD_LAG_MS: bad })).toThrow(/SHARDSHIFT_YIELD_LAG_MS must be/);
    }
  });
});
