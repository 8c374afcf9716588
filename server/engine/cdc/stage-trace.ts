// A diagnostic: per source transaction, when it committed on the source, when the runner had it
// (read from the stream) and when its apply returned — the stages of CDC's lag. Off unless
// SHARDSHIFT_CDC_TRACE names a file (the bench sets it for its worker); then lines
// "<commit ms> <read ms> <applied ms>" (Unix epoch, fractional) are appended once a second.
import fs from "node:fs";

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
