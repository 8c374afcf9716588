// Background work on a worker yields to the replication it runs beside.
//
// A parity chunk or a backfill chunk is a burst of work on legacy and on every shard at once. A
// change replicated meanwhile waits for a core at each hop: legacy's WAL sender, our CDC thread, the
// shard's backend. Raising the CDC thread's priority (cdc/thread-priority.ts) covers one hop of
// three. So the background loops watch how late replication runs and hold their next chunk while
// it runs late. TCP's background transports do the same (LEDBAT, RFC 6817): they measure one-way
// delay over its base, the least seen lately, and back off when it rises.
//
// The signal: each replication loop holds a slot in its thread's shared buffer and writes, with no
// message and no wait:
//   - excess: how much longer its last applied batch took from the source's commit than the least
//     any of its batches took in the last minute (the least cancels the source's clock offset and
//     the path's fixed cost, and is carried forward by a skew between the clocks: WindowMin), and
//     when that was measured;
//   - held since: when our thread read the oldest batch that has not committed everywhere yet
//     (the worker's own clock: a target that stopped answering raises this, not the excess).
// The background loops read every slot before each chunk (yieldToReplication). A reading older than
// FRESH_MS counts for nothing: a stream gone quiet raises nothing.
//
// A pause is bounded (MAX_PAUSE_MS), so background work always moves. And lateness counts only up to
// CONTENTION_CEILING_MS: a stream seconds behind is catching up a backlog (a promotion's reverse
// streams, a restart) or waiting on a target that stopped answering. Our chunks' share of the cores
// is not what holds it there, and yielding to it held a throttled backfill at a quarter of its rate
// for as long as the backlog lasted (the bench, session 18).

/** Slots per thread: replication loops in one CDC thread at once (more run without a signal). */
const SLOTS = 64;
const FIELDS = 3; // excess ms, measured at (epoch ms), held since (epoch ms; 0: nothing held)
const FRESH_MS = 100;
const BASE_WINDOW_BUCKETS = 6;
const BASE_BUCKET_MS = 10_000;
/** The most clock skew the least delay is carried forward by (ms per ms: 500 ppm, NTP's slew). */
const MAX_SKEW = 500e-6;
/**
 * Background work waits while replication runs more than this late (SHARDSHIFT_YIELD_LAG_MS; 0 turns
 * the yield off). At 5 ms the bench's busy worker's lag p99 fell by a quarter to a third, but its
 * 30 s pairs went 1.11–2.77× quiet over three runs (pooled 1.73, 1.66, 1.39); at 3 ms two runs of
 * five pairs pooled 1.42 and 1.36 (pairs 1.09–1.79), and the parity pass and the other plan's
 * backfill beside them took about 1.6–2× as long.
 */
export const DEFAULT_YIELD_LAG_MS = 3;
/** Lateness past this is a backlog or a stuck target, not contention: it counts for nothing. */
export const CONTENTION_CEILING_MS = 1_000;
/** The longest one chunk of background work waits for replication. */
export const MAX_PAUSE_MS = 250;
/** A stream behind the source catches up a backlog if it is less behind than this long before. */
const TREND_MS = 1_000;
const POLL_MS = 2;

/** A thread's slots, made by whoever starts the thread and handed to it (workerData). */
export function newPressureBuffer(): SharedArrayBuffer {
  // Only the thread the buffer is handed to claims and writes slots; others only read them.
  return new SharedArrayBuffer(SLOTS * FIELDS * BigInt64Array.BYTES_PER_ELEMENT);
}

let threadBuffer: BigInt64Array | null = null;
const claimed = new Set<number>();

/** In a CDC thread: its slots (the replication loops it runs claim them). */
export function installPressureBuffer(buffer: SharedArrayBuffer): void {
  threadBuffer = new BigInt64Array(buffer);
  claimed.clear();
}

/**
 * The least of the values seen in the last minute (six buckets of ten seconds).
 *
 * With `skew` (a delay between two clocks: the source's commit, our apply), each bucket's least is
 * carried forward to `now` at the rate the buckets' least values all rise by: a source clock that
 * runs slow against ours makes every delay grow by that rate, and a least up to a minute old then
 * read as lateness with no contention at all (100 ppm: 5–6 ms, every reading, for as long as the
 * skew lasted: break-pressure-skew.test.ts). Only a rise that every pair of consecutive full buckets
 * agrees on counts, up to MAX_SKEW: contention raises some buckets' least and not others'.
 */
class WindowMin {
  private readonly mins = new Array<number>(BASE_WINDOW_BUCKETS).fill(Number.POSITIVE_INFINITY);
  /** When each bucket's least was seen. */
  private readonly ats = new Array<number>(BASE_WINDOW_BUCKETS).fill(0);
  private bucket = 0;

  constructor(private readonly skew = false) {}

  add(value: number, now: number): void {
    const bucket = Math.floor(now / BASE_BUCKET_MS);
    if (bucket !== this.bucket) {
      const passed = Math.min(BASE_WINDOW_BUCKETS, Math.max(0, bucket - this.bucket));
      for (let step = 1; step <= passed; step++) {
        this.mins[(this.bucket + step) % BASE_WINDOW_BUCKETS] = Number.POSITIVE_INFINITY;
      }
      this.bucket = bucket;
    }
    const at = bucket % BASE_WINDOW_BUCKETS;
    if (value < (this.mins[at] as number)) {
      this.mins[at] = value;
      this.ats[at] = now;
    }
  }

  /** The least value of the window (0 before any), carried forward to `now` (see `skew`). */
  least(now: number): number {
    const slot = (age: number) =>
      (((this.bucket - age) % BASE_WINDOW_BUCKETS) + BASE_WINDOW_BUCKETS) % BASE_WINDOW_BUCKETS;
    let rate = 0;
    if (this.skew) {
      // The rise per ms every pair of consecutive full buckets shows (at least two pairs).
      let pairs = 0;
      let agreed = Number.POSITIVE_INFINITY;
      for (let age = BASE_WINDOW_BUCKETS - 1; age >= 2; age--) {
        const older = this.mins[slot(age)] as number;
        const newer = this.mins[slot(age - 1)] as number;
        if (!Number.isFinite(older) || !Number.isFinite(newer)) continue;
        pairs++;
        agreed = Math.min(agreed, (newer - older) / BASE_BUCKET_MS);
      }
      if (pairs >= 2) rate = Math.min(MAX_SKEW, Math.max(0, agreed));
    }
    let least = Number.POSITIVE_INFINITY;
    for (let age = 0; age < BASE_WINDOW_BUCKETS; age++) {
      const min = this.mins[slot(age)] as number;
      if (Number.isFinite(min))
        least = Math.min(least, min + rate * Math.max(0, now - (this.ats[slot(age)] as number)));
    }
    return Number.isFinite(least) ? least : 0;
  }
}

/**
 * One replication loop's slot: it reports each applied batch and what it holds. Without a buffer
 * in this thread (tests that run a loop directly) it reports nowhere.
 */
export class PressureSlot {
  private readonly delays = new WindowMin(true);
  // How long a batch takes from our read to its commit at least: a target across a network takes
  // its round trips every time, and only what a batch waits beyond them is lateness.
  private readonly applies = new WindowMin();
  // The oldest batch held last (held()), and how far behind the source a batch held at least
  // TREND_MS before it was read: whether the stream catches up a backlog or falls behind.
  private heldAt = 0;
  private heldCommit = Number.NaN;
  private trend: { at: number; readLag: number } | null = null;
  private catchingUp = false;

  private constructor(
    private readonly view: BigInt64Array | null,
    private readonly index: number,
  ) {}

  static claim(): PressureSlot {
    const view = threadBuffer;
    if (!view) return new PressureSlot(null, -1);
    for (let i = 0; i < SLOTS; i++) {
      if (claimed.has(i)) continue;
      claimed.add(i);
      return new PressureSlot(view, i);
    }
    return new PressureSlot(null, -1);
  }

  /** A batch whose last transaction committed on the source at `commitMs` is applied everywhere. */
  applied(commitMs: number, now = Date.now()): void {
    if (!this.view || !Number.isFinite(commitMs)) return;
    const delay = now - commitMs;
    this.delays.add(delay, now);
    const excess = Math.max(0, Math.round(delay - this.delays.least(now)));
    Atomics.store(this.view, this.index * FIELDS, BigInt(excess));
    Atomics.store(this.view, this.index * FIELDS + 1, BigInt(now));
  }

  /** A batch our thread read at `readAtMs` committed on every target it went to. */
  committed(readAtMs: number, now = Date.now()): void {
    if (this.view) this.applies.add(Math.max(0, now - readAtMs), now);
  }

  /**
   * Our thread read the oldest batch not yet committed everywhere at `sinceMs` (0: none); its last
   * transaction committed on the source at `commitMs` (if known). Stored shifted by the least time a
   * batch takes to commit, so the reader sees only the wait beyond it.
   *
   * A stream catching up a backlog holds nothing: its oldest batch waits behind the backlog's own
   * batches queued ahead of it (tens to hundreds of ms, under the ceiling), which is no contention
   * (break-yield-backlog.test.ts: background work beside a catch-up ran at 0.15 of its rate). It is
   * catching up when its oldest batch was read more than CONTENTION_CEILING_MS after the source
   * committed it, and less so than one read TREND_MS before: one falling further behind (the source
   * writes faster than it applies, as under contention) still counts.
   */
  held(sinceMs: number, commitMs = Number.NaN): void {
    if (!this.view) return;
    if (
      sinceMs > 0 &&
      Number.isFinite(commitMs) &&
      (sinceMs !== this.heldAt || commitMs !== this.heldCommit)
    ) {
      this.heldAt = sinceMs;
      this.heldCommit = commitMs;
      const readLag = sinceMs - commitMs;
      // Judged against a batch read at least TREND_MS before: between two batches, the reader's
      // waits for room in the lanes make the read lag jump up and down.
      if (readLag <= CONTENTION_CEILING_MS) this.catchingUp = false;
      if (!this.trend || sinceMs - this.trend.at >= TREND_MS) {
        this.catchingUp = readLag > CONTENTION_CEILING_MS && (!this.trend || readLag < this.trend.readLag);
        this.trend = { at: sinceMs, readLag };
      }
    }
    const backlog = sinceMs > 0 && Number.isFinite(commitMs) && this.catchingUp;
    const since = sinceMs > 0 && !backlog ? sinceMs + this.applies.least(Date.now()) : 0;
    Atomics.store(this.view, this.index * FIELDS + 2, BigInt(Math.round(since)));
  }

  release(): void {
    if (!this.view) return;
    for (let f = 0; f < FIELDS; f++) Atomics.store(this.view, this.index * FIELDS + f, 0n);
    claimed.delete(this.index);
  }
}

const watched = new Set<BigInt64Array>();

/** In the process that runs the background work: read this thread's slots from now on. */
export function watchPressure(buffer: SharedArrayBuffer): () => void {
  const view = new BigInt64Array(buffer);
  watched.add(view);
  return () => watched.delete(view);
}

/** The larger of the two, where `late` is within the ceiling (CONTENTION_CEILING_MS). */
function contention(most: number, late: number): number {
  return late <= CONTENTION_CEILING_MS ? Math.max(most, late) : most;
}

/**
 * How late replication runs now, in ms past its usual: the most of every watched slot that runs late
 * by contention (at most CONTENTION_CEILING_MS; a backlog or a stuck target counts for nothing).
 */
export function replicationLatenessMs(now = Date.now()): number {
  let most = 0;
  for (const view of watched) {
    for (let i = 0; i < SLOTS; i++) {
      const at = Number(Atomics.load(view, i * FIELDS + 1));
      // A reading from the future was written before the wall clock stepped back: not fresh (it
      // held a quiet stream's last late batch up for the step's length: break-pressure-clock.test.ts).
      if (at > 0 && Math.abs(now - at) <= FRESH_MS)
        most = contention(most, Number(Atomics.load(view, i * FIELDS)));
      const since = Number(Atomics.load(view, i * FIELDS + 2));
      if (since > 0) most = contention(most, now - since);
    }
  }
  return most;
}

/** SHARDSHIFT_YIELD_LAG_MS (0–10,000 ms; 0: background work never waits), or the default (3 ms). */
export function yieldLagMs(env: Record<string, string | undefined> = process.env): number {
  const text = env.SHARDSHIFT_YIELD_LAG_MS?.trim();
  if (!text) return DEFAULT_YIELD_LAG_MS;
  const ms = Number(text);
  if (!Number.isInteger(ms) || ms < 0 || ms > 10_000) {
    throw new Error(
      `SHARDSHIFT_YIELD_LAG_MS must be a whole number of milliseconds from 0 to 10000 (got "${text}"); 0 lets background work run whatever replication's lag.`,
    );
  }
  return ms;
}

const totals = { pauses: 0, pausedMs: 0 };

/** Pauses so far in this process, and their time: what yielding cost the background work. */
export function yieldTotals(): { pauses: number; pausedMs: number } {
  return { ...totals };
}

let configured: number | null = null;

/**
 * The share of its rate background work takes (MIN_PACE…1), as LEDBAT paces a transfer: halved at
 * most every CUT_MS while replication runs late, back to whole after RECOVER_MS of it on time. A
 * pause alone ends with the burst that caused it, and the next chunk brings the next burst; a lower
 * pace keeps the load down for as long as replication needs the cores.
 */
let pace = 1;
let lastCut = 0;
let lastTick = 0;
const MIN_PACE = 0.1;
const CUT_MS = 50;
const RECOVER_MS = 1_000;

// `now` is performance.now(): a step of the wall clock does not move it (a span across a step came
// out negative, and so did the pace: break-pressure-clock.test.ts).
function repace(late: boolean, now: number): number {
  if (late) {
    if (now - lastCut >= CUT_MS) {
      pace = Math.max(MIN_PACE, pace / 2);
      lastCut = now;
    }
  } else if (lastTick > 0) {
    pace = Math.min(1, pace + (now - lastTick) / RECOVER_MS);
  }
  lastTick = now;
  return pace;
}

/**
 * Before a chunk of background work: waits while replication on this worker runs more than the
 * limit late (at most MAX_PAUSE_MS), and returns the share of its rate the work may take now
 * (charge `rows / pace` to its token bucket).
 */
export async function yieldToReplication(
  options: { limitMs?: number; maxPauseMs?: number; signal?: AbortSignal } = {},
): Promise<number> {
  if (configured === null) configured = yieldLagMs();
  const limit = options.limitMs ?? configured;
  if (limit <= 0 || watched.size === 0) return 1;
  // The pause and the pace are spans of time: measured on the monotonic clock, so a step of the wall
  // clock (which the readings use, as the CDC thread wrote them) neither stretches a pause past its
  // bound nor turns the pace negative (break-pressure-clock.test.ts).
  const started = performance.now();
  if (replicationLatenessMs() <= limit) return repace(false, started);
  repace(true, started);
  const until = started + (options.maxPauseMs ?? MAX_PAUSE_MS);
  let now = started;
  while (now < until && !options.signal?.aborted && replicationLatenessMs() > limit) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    now = performance.now();
  }
  totals.pauses += 1;
  totals.pausedMs += now - started;
  return pace;
}
