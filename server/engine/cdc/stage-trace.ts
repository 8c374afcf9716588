// A diagnostic: per source transaction, when it committed on the source, when the runner had it
// (read from the stream) and when its apply returned — the stages of CDC's lag. Off unless
// SHARDSHIFT_CDC_TRACE names a file (the bench sets it for its worker); then lines
// "<commit ms> <read ms> <applied ms>" (Unix epoch, fractional) are appended once a second.
import fs from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";

const FLUSH_EVERY_MS = 1_000;

/** Epoch milliseconds with the microseconds of an ISO timestamp ("…T12:00:00.123456Z"). */
function isoToEpochMs(iso: string): number {
  const fraction = /\.(\d+)Z$/.exec(iso)?.[1] ?? "0";
  const whole = Date.parse(`${iso.replace(/\.\d+Z$/, "")}Z`);
  return whole + Number(`0.${fraction}`) * 1000;
}

export function nowEpochMs(): number {
  return performance.timeOrigin + performance.now();
}

export class StageTrace {
  private lines: string[] = [];
  private lastFlush = 0;

  private constructor(private readonly file: string) {}

  static fromEnv(): StageTrace | null {
    const file = process.env.SHARDSHIFT_CDC_TRACE;
    return file ? new StageTrace(file) : null;
  }

  record(commitTimesIso: readonly string[], readAtMs: number, appliedAtMs: number): void {
    for (const iso of commitTimesIso) {
      this.lines.push(`${isoToEpochMs(iso).toFixed(3)} ${readAtMs.toFixed(3)} ${appliedAtMs.toFixed(3)}`);
    }
    if (appliedAtMs - this.lastFlush >= FLUSH_EVERY_MS) this.flush();
  }

  flush(): void {
    this.lastFlush = nowEpochMs();
    if (this.lines.length === 0) return;
    fs.appendFileSync(this.file, `${this.lines.join("\n")}\n`);
    this.lines = [];
  }
}

/** Reads a trace file: per transaction, commit → read and read → applied, for commits in [fromMs, toMs]. */
export function readStageTrace(
  file: string,
  fromMs: number,
  toMs: number,
): { toRead: number[]; toApplied: number[] } {
  const toRead: number[] = [];
  const toApplied: number[] = [];
  if (!fs.existsSync(file)) return { toRead, toApplied };
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const [commit, read, applied] = line.split(" ").map(Number);
    if (commit === undefined || read === undefined || applied === undefined || Number.isNaN(applied))
      continue;
    if (commit < fromMs || commit > toMs) continue;
    toRead.push(read - commit);
    toApplied.push(applied - read);
  }
  return { toRead, toApplied };
}

/** This thread's time on a core and waiting in the run queue so far, ms (Linux; null elsewhere). */
function threadSchedMs(): { onCpu: number; waiting: number } | null {
  try {
    const [onCpu, waiting] = fs.readFileSync("/proc/thread-self/schedstat", "utf8").split(" ").map(Number);
    if (onCpu === undefined || waiting === undefined || Number.isNaN(waiting)) return null;
    return { onCpu: onCpu / 1e6, waiting: waiting / 1e6 };
  } catch {
    return null;
  }
}

let loopTrace: { histogram: ReturnType<typeof monitorEventLoopDelay>; timer: NodeJS.Timeout } | null = null;

/**
 * The CDC thread's own event-loop delay, sampled while the stage trace is on: once a second, the
 * p99 and max delay (ms) of the last second and the thread's time on a core and waiting for one in
 * that second, to `<trace>.loop`, named by its lane. A delay with the thread waiting for a core is
 * the machine's contention; a delay with it on a core is a stall of its own (its work, or its
 * garbage collector). Runs while the thread runs a stream: started with its first
 * (startLoopDelayTrace, again while it runs is a no-op) and stopped once its last ended
 * (stopLoopDelayTrace): a thread warmed at boot, or whose streams all ended, is idle and wakes for
 * nothing (left running, an idle thread woke 190 times a second: break-trace-idle.test.ts).
 */
export function startLoopDelayTrace(lane: string): void {
  const file = process.env.SHARDSHIFT_CDC_TRACE;
  if (!file || loopTrace) return;
  // Sampled every 5 ms: at 1 ms the sampler's own wake-ups took 25 ms a second of a core in an idle
  // thread at the CDC's raised priority, on the cores the measured lag shares.
  const histogram = monitorEventLoopDelay({ resolution: 5 });
  histogram.enable();
  let last = threadSchedMs();
  const timer = setInterval(() => {
    const now = threadSchedMs();
    const onCpu = now && last ? now.onCpu - last.onCpu : Number.NaN;
    const waiting = now && last ? now.waiting - last.waiting : Number.NaN;
    last = now;
    const ms = (ns: number) => (ns / 1e6).toFixed(3);
    const line = `${nowEpochMs().toFixed(0)} ${lane} ${ms(histogram.percentile(99))} ${ms(histogram.max)} ${onCpu.toFixed(1)} ${waiting.toFixed(1)}\n`;
    histogram.reset();
    fs.appendFileSync(`${file}.loop`, line);
  }, 1_000).unref();
  loopTrace = { histogram, timer };
}

/** The thread's last stream ended: the sampler stops until the next stream starts it. */
export function stopLoopDelayTrace(): void {
  if (!loopTrace) return;
  clearInterval(loopTrace.timer);
  loopTrace.histogram.disable();
  loopTrace = null;
}

export interface LoopDelaySummary {
  /** The worst second's p99 loop delay, and the largest delay, ms. */
  p99: number;
  max: number;
  /** Per second on average: the thread's time on a core, and waiting in the run queue for one, ms. */
  onCpuMsPerS: number;
  waitingMsPerS: number;
}

/** The loop-delay samples of [fromMs, toMs], per CDC thread (lane: forward, reverse). */
export function readLoopDelayTrace(
  file: string,
  fromMs: number,
  toMs: number,
): Map<string, LoopDelaySummary> {
  const path = `${file}.loop`;
  const lanes = new Map<string, LoopDelaySummary & { seconds: number }>();
  if (!fs.existsSync(path)) return lanes;
  for (const line of fs.readFileSync(path, "utf8").split("\n")) {
    const [atText, lane, ...rest] = line.split(" ");
    const [p, m, onCpu, waiting] = rest.map(Number);
    const at = Number(atText);
    if (lane === undefined || p === undefined || m === undefined || Number.isNaN(m)) continue;
    if (at < fromMs || at > toMs + 1_000) continue;
    const out = lanes.get(lane) ?? { p99: 0, max: 0, onCpuMsPerS: 0, waitingMsPerS: 0, seconds: 0 };
    lanes.set(lane, out);
    out.p99 = Math.max(out.p99, p);
    out.max = Math.max(out.max, m);
    if (onCpu !== undefined && waiting !== undefined && !Number.isNaN(waiting)) {
      out.seconds++;
      out.onCpuMsPerS += onCpu;
      out.waitingMsPerS += waiting;
    }
  }
  for (const out of lanes.values()) {
    out.onCpuMsPerS /= Math.max(1, out.seconds);
    out.waitingMsPerS /= Math.max(1, out.seconds);
  }
  return lanes;
}
