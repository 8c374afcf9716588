// `npm run bench -- [flags]`: the benchmark's settings, parsed and checked once. Defaults keep the
// whole run under ~4 minutes on 2 cores.
import { parseArgs } from "node:util";

/**
 * Parts of the bench `--only` can pick. Each brings what it needs: the servers and the dataset
 * always; parity, cdc, busy and throttled the worker's unthrottled backfill (its figure is reported
 * with backfill only, which also runs the raw COPY baseline); busy the quiet lag test it is compared
 * with (cdc's burst and native's tests only with cdc); cutover the native shard → legacy baseline of
 * its reverse lag; breaker and promotion only the backfill (movement 1 streaming both ways).
 */
export const BENCH_STEPS = [
  "backfill",
  "parity",
  "cdc",
  "busy",
  "throttled",
  "cutover",
  "breaker",
  "promotion",
  "routing",
] as const;
export type BenchStep = (typeof BENCH_STEPS)[number];

export interface BenchOptions {
  rows: number;
  tenants: number;
  seed: number;
  /** Control plane on portBase, legacy on +1, shards on +2 … */
  portBase: number;
  shards: number;
  /** Rate limit of the throttled backfill, rows/s. */
  throttle: number;
  /** The throttled rate is measured between these two times after the movement starts, in seconds. */
  throttleFromS: number;
  throttleToS: number;
  /** The CDC lag test: paced single-row inserts per second, for this many seconds. */
  cdcRate: number;
  cdcSeconds: number;
  /** The CDC throughput test: rows inserted as fast as possible, in transactions of burstBatch rows. */
  burstRows: number;
  burstBatch: number;
  burstConnections: number;
  /** Rounds of the parity measurement (full check, then the baselines); the median round is reported. */
  parityRounds: number;
  /** Tenants cut over to their shards under the SDK workload (cutovers/s, freeze window). */
  cutoverTenants: number;
  /** The SDK write workload's rate during the cutovers, writes/s over all tenants. */
  cutoverWriteRate: number;
  /** Of those, how many are cut back to legacy afterwards (their freeze window separately). */
  cutoverBack: number;
  /** The reverse lag test (shard → legacy, ours and native): paced at cdcRate for this many seconds. */
  reverseSeconds: number;
  /**
   * The cutover step puts its tenants on their shards by one map change instead of cutovers under
   * the SDK workload: the reverse lag alone, quickly, and whatever the cutovers' state.
   */
  cutoverByMap: boolean;
  /** The promotion step: tenants in the cohort promoted under the SDK workload. */
  promotionTenants: number;
  /** The promotion step stops the promotion after this many seconds and reports what it reached. */
  promotionSeconds: number;
  /** Write every figure as JSON here (null: print only). */
  out: string | null;
  verbose: boolean;
  /** The steps to run (null: all of them). */
  only: ReadonlySet<BenchStep> | null;
  /** What the busy-worker lag test runs beside CDC: a diagnostic split of its load. */
  busyLoad: BusyLoad;
  /**
   * Quiet/busy lag test pairs of the busy-worker test, interleaved; the pair with the median ratio is
   * reported (a single 30 s quiet p99 moves between 9 and 20 ms from run to run here).
   */
  busyPairs: number;
}

export const BUSY_LOADS = ["both", "parity", "backfill"] as const;
export type BusyLoad = (typeof BUSY_LOADS)[number];

export const DEFAULT_BENCH_OPTIONS: BenchOptions = {
  rows: 1_000_000,
  tenants: 2_000,
  seed: 42,
  portBase: 27_320,
  shards: 2,
  throttle: 20_000,
  throttleFromS: 3,
  throttleToS: 13,
  cdcRate: 1_000,
  cdcSeconds: 30,
  burstRows: 30_000,
  burstBatch: 100,
  burstConnections: 4,
  parityRounds: 3,
  cutoverTenants: 500,
  cutoverBack: 50,
  cutoverWriteRate: 1_000,
  reverseSeconds: 15,
  cutoverByMap: false,
  promotionTenants: 500,
  promotionSeconds: 300,
  out: null,
  verbose: false,
  only: null,
  busyLoad: "both",
  busyPairs: 5,
};

export const BENCH_USAGE = `Usage: npm run bench -- [options]

  --rows N               rows in the generated legacy dataset (default ${DEFAULT_BENCH_OPTIONS.rows})
  --tenants N            tenants in the dataset (default ${DEFAULT_BENCH_OPTIONS.tenants})
  --seed N               dataset seed (default ${DEFAULT_BENCH_OPTIONS.seed})
  --port-base N          first of the ${2 + DEFAULT_BENCH_OPTIONS.shards} PostgreSQL ports (default ${DEFAULT_BENCH_OPTIONS.portBase})
  --throttle N           rate limit of the throttled backfill, rows/s (default ${DEFAULT_BENCH_OPTIONS.throttle})
  --throttle-window A,B  measure the throttled rate from A to B seconds after start (default ${DEFAULT_BENCH_OPTIONS.throttleFromS},${DEFAULT_BENCH_OPTIONS.throttleToS})
  --cdc-rate N           paced writes/s for the CDC lag test (default ${DEFAULT_BENCH_OPTIONS.cdcRate})
  --cdc-seconds N        duration of the CDC lag test (default ${DEFAULT_BENCH_OPTIONS.cdcSeconds})
  --burst N              rows inserted for the CDC throughput test (default ${DEFAULT_BENCH_OPTIONS.burstRows})
  --parity-rounds N      rounds of the parity measurement, the median reported (default ${DEFAULT_BENCH_OPTIONS.parityRounds})
  --cutover-tenants N    tenants cut over to their shards under SDK writes (default ${DEFAULT_BENCH_OPTIONS.cutoverTenants})
  --cutover-back N       of those, cut back to legacy afterwards (default ${DEFAULT_BENCH_OPTIONS.cutoverBack})
  --cutover-write-rate N SDK writes/s during the cutovers (default ${DEFAULT_BENCH_OPTIONS.cutoverWriteRate})
  --reverse-seconds N    duration of the reverse (shard → legacy) lag test (default ${DEFAULT_BENCH_OPTIONS.reverseSeconds})
  --cutover-by-map       put the cutover step's tenants on their shards by a map change, not cutovers:
                         the reverse lag only (e.g. --only cutover --cutover-by-map --cutover-tenants 50)
  --promotion-tenants N  tenants in the cohort the promotion step promotes (default ${DEFAULT_BENCH_OPTIONS.promotionTenants})
  --promotion-seconds N  the promotion step's deadline: stopped there, what it reached reported (default ${DEFAULT_BENCH_OPTIONS.promotionSeconds})
  --only A,B             run only these steps (${BENCH_STEPS.join(", ")}); e.g. --only parity,busy
  --busy-load L          the busy-worker test's load: both (default), parity or backfill alone
  --busy-pairs N         quiet/busy lag test pairs of that test, interleaved; the median ratio reported (default ${DEFAULT_BENCH_OPTIONS.busyPairs})
  --out FILE             also write every figure as JSON to FILE
  --verbose              print the PostgreSQL servers' log lines too, and each lag test per second
  --help                 show this text`;

export class BenchUsageError extends Error {}

function positiveInteger(flag: string, text: string | undefined, fallback: number, min = 1): number {
  if (text === undefined) return fallback;
  const value = Number(text.replaceAll("_", ""));
  if (!Number.isSafeInteger(value) || value < min) {
    throw new BenchUsageError(`--${flag} needs a whole number ≥ ${min}, got "${text}".`);
  }
  return value;
}

/** Returns null when --help was asked for. */
export function parseBenchOptions(argv: readonly string[]): BenchOptions | null {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    throw new BenchUsageError(`${(error as Error).message}\n\n${BENCH_USAGE}`);
  }
  const v = parsed.values;
  if (v.help) return null;
  const d = DEFAULT_BENCH_OPTIONS;
  const [fromText, toText, ...extra] = (v["throttle-window"] ?? `${d.throttleFromS},${d.throttleToS}`).split(
    ",",
  );
  const throttleFromS = positiveInteger("throttle-window", fromText, d.throttleFromS, 0);
  const throttleToS = positiveInteger("throttle-window", toText, d.throttleToS, 1);
  if (extra.length || throttleToS <= throttleFromS) {
    throw new BenchUsageError(
      `--throttle-window needs two whole seconds A,B with A < B (e.g. 3,13), got "${v["throttle-window"]}".`,
    );
  }
  const options: BenchOptions = {
    rows: positiveInteger("rows", v.rows, d.rows),
    tenants: positiveInteger("tenants", v.tenants, d.tenants),
    seed: positiveInteger("seed", v.seed, d.seed, 0),
    portBase: positiveInteger("port-base", v["port-base"], d.portBase, 1024),
    shards: d.shards,
    throttle: positiveInteger("throttle", v.throttle, d.throttle, 100),
    throttleFromS,
    throttleToS,
    cdcRate: positiveInteger("cdc-rate", v["cdc-rate"], d.cdcRate),
    cdcSeconds: positiveInteger("cdc-seconds", v["cdc-seconds"], d.cdcSeconds),
    burstRows: positiveInteger("burst", v.burst, d.burstRows, d.burstBatch),
    burstBatch: d.burstBatch,
    burstConnections: d.burstConnections,
    parityRounds: positiveInteger("parity-rounds", v["parity-rounds"], d.parityRounds),
    cutoverTenants: positiveInteger("cutover-tenants", v["cutover-tenants"], d.cutoverTenants),
    cutoverBack: positiveInteger("cutover-back", v["cutover-back"], d.cutoverBack, 0),
    cutoverWriteRate: positiveInteger("cutover-write-rate", v["cutover-write-rate"], d.cutoverWriteRate),
    reverseSeconds: positiveInteger("reverse-seconds", v["reverse-seconds"], d.reverseSeconds),
    cutoverByMap: v["cutover-by-map"] ?? false,
    promotionTenants: positiveInteger("promotion-tenants", v["promotion-tenants"], d.promotionTenants),
    promotionSeconds: positiveInteger("promotion-seconds", v["promotion-seconds"], d.promotionSeconds),
    out: v.out ?? null,
    verbose: v.verbose ?? false,
    only: parseOnly(v.only),
    busyLoad: parseBusyLoad(v["busy-load"]),
    busyPairs: positiveInteger("busy-pairs", v["busy-pairs"], d.busyPairs),
  };
  if (options.cutoverTenants > options.tenants) {
    throw new BenchUsageError(
      `--cutover-tenants (${options.cutoverTenants}) cannot exceed the dataset's --tenants (${options.tenants}).`,
    );
  }
  if (options.cutoverBack > options.cutoverTenants) {
    throw new BenchUsageError(
      `--cutover-back (${options.cutoverBack}) cannot exceed --cutover-tenants (${options.cutoverTenants}): only tenants on a shard can come back.`,
    );
  }
  if (options.promotionTenants >= options.tenants) {
    throw new BenchUsageError(
      `--promotion-tenants (${options.promotionTenants}) must be below the dataset's --tenants (${options.tenants}): the ladder's last step holds the rest.`,
    );
  }
  if (options.throttle > 1_000_000) throw new BenchUsageError("--throttle is at most 1,000,000 rows/s.");
  if (options.portBase + 1 + options.shards > 65_535) throw new BenchUsageError("--port-base is too high.");
  return options;
}

function parseBusyLoad(text: string | undefined): BusyLoad {
  if (text === undefined) return DEFAULT_BENCH_OPTIONS.busyLoad;
  if (!(BUSY_LOADS as readonly string[]).includes(text)) {
    throw new BenchUsageError(`--busy-load takes one of ${BUSY_LOADS.join(", ")}; got "${text}".`);
  }
  return text as BusyLoad;
}

function parseOnly(text: string | undefined): ReadonlySet<BenchStep> | null {
  if (text === undefined) return null;
  const names = text
    .split(",")
    .map((n) => n.trim())
    .filter(Boolean);
  const unknown = names.filter((n) => !(BENCH_STEPS as readonly string[]).includes(n));
  if (!names.length || unknown.length) {
    throw new BenchUsageError(
      `--only takes steps from ${BENCH_STEPS.join(", ")}, separated by commas; got "${text}".`,
    );
  }
  return new Set(names as BenchStep[]);
}

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      rows: { type: "string" },
      tenants: { type: "string" },
      seed: { type: "string" },
      "port-base": { type: "string" },
      throttle: { type: "string" },
      "throttle-window": { type: "string" },
      "cdc-rate": { type: "string" },
      "cdc-seconds": { type: "string" },
      burst: { type: "string" },
      "parity-rounds": { type: "string" },
      "cutover-tenants": { type: "string" },
      "cutover-back": { type: "string" },
      "reverse-seconds": { type: "string" },
      "cutover-write-rate": { type: "string" },
      "cutover-by-map": { type: "boolean" },
      "promotion-tenants": { type: "string" },
      "promotion-seconds": { type: "string" },
      out: { type: "string" },
      only: { type: "string" },
      "busy-load": { type: "string" },
      "busy-pairs": { type: "string" },
      verbose: { type: "boolean" },
      help: { type: "boolean" },
    },
  });
}
