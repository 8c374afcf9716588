// The CDC probe: how long a row takes from its commit on legacy to its apply on a shard, measured
// the same way for our CDC and for native logical replication.
//
// - On the source, `bench_probe` rows carry sent_at = clock_timestamp() at insert time.
// - On each target, an AFTER INSERT trigger on bench_probe records clock_timestamp() − sent_at in
//   `bench_arrival`. The trigger is ENABLE ALWAYS, so it fires under session_replication_role =
//   replica, which both our apply and the native apply worker use. All servers share one clock.
// - The trigger is a deferred constraint trigger: it fires as the applying transaction commits,
//   when the row becomes visible — the lag as a reader sees it, for any batching. (A plain row
//   trigger fires when the row is written: before the batch's commit for ours, and before the
//   Commit message even arrives for the native apply worker, which applies changes as they come.)
//   The native apply worker runs with search_path = '', hence the qualified names.
import type pg from "pg";
import type { LagSummary } from "./stats";
import { pollUntil, sleep, summarizeLags } from "./stats";

/** On legacy before the movement starts, so it is introspected, published and created on the shards. */
export const PROBE_TABLE_SQL = `
create table if not exists public.bench_probe (
  tenant_id bigint not null,
  id bigserial,
  sent_at timestamptz not null default clock_timestamp(),
  primary key (tenant_id, id)
)`;

/** On every target database, once bench_probe exists there. */
export const ARRIVAL_SETUP_SQL = `
create table if not exists public.bench_arrival (
  lag_ms double precision not null,
  sent_at timestamptz not null,
  arrived_at timestamptz not null
);
create or replace function public.bench_record_arrival() returns trigger language plpgsql as $$
declare
  arrived timestamptz := clock_timestamp();
begin
  insert into public.bench_arrival (lag_ms, sent_at, arrived_at)
  values (extract(epoch from arrived - new.sent_at)::double precision * 1000, new.sent_at, arrived);
  return null;
end $$;
drop trigger if exists bench_probe_arrival on public.bench_probe;
create constraint trigger bench_probe_arrival after insert on public.bench_probe
  deferrable initially deferred
  for each row execute function public.bench_record_arrival();
alter table public.bench_probe enable always trigger bench_probe_arrival`;

export interface ProbeDriveResult {
  inserted: number;
  errors: number;
  seconds: number;
  writesPerSecond: number;
}

/** Opens `n` connections of the pool up front, so connection set-up is not part of a measurement. */
export async function warmPool(pool: pg.Pool, n: number): Promise<void> {
  const clients = await Promise.all(Array.from({ length: n }, () => pool.connect()));
  for (const c of clients) c.release();
}

/**
 * Paced single-row inserts, each its own transaction: every tickMs, as many as are due at `rate`
 * per second since the start, sent on the pool's connections without waiting for earlier ones.
 */
export async function drivePacedProbes(
  pool: pg.Pool,
  options: { rate: number; seconds: number; tenantIds: readonly string[]; tickMs?: number },
): Promise<ProbeDriveResult> {
  // A fixed rate means evenly spaced writes: one tick per millisecond, not bursts of ten every 10 ms.
  const tickMs = options.tickMs ?? 1;
  const tenants = options.tenantIds;
  const started = performance.now();
  const endsAt = started + options.seconds * 1000;
  const inFlight = new Set<Promise<void>>();
  let issued = 0;
  let inserted = 0;
  let errors = 0;
  let firstError: unknown;
  for (let now = performance.now(); now < endsAt; now = performance.now()) {
    const due = Math.floor(((now - started) / 1000) * options.rate);
    while (issued < due) {
      const tenant = tenants[(issued * 7_919) % tenants.length] ?? "1";
      issued++;
      const write: Promise<void> = pool
        .query("insert into public.bench_probe (tenant_id) values ($1)", [tenant])
        .then(
          () => {
            inserted++;
          },
          (error: unknown) => {
            errors++;
            firstError ??= error;
          },
        )
        .finally(() => inFlight.delete(write));
      inFlight.add(write);
    }
    await sleep(Math.max(1, tickMs - (performance.now() - now)));
  }
  await Promise.all(inFlight);
  const seconds = (performance.now() - started) / 1000;
  if (errors > 0) {
    throw new Error(
      `${errors} of ${issued} probe inserts failed on the source; the first: ${(firstError as Error).message}`,
    );
  }
  return { inserted, errors, seconds, writesPerSecond: inserted / seconds };
}

/** `rows` probe rows as fast as possible: multi-row inserts of `batch` rows from `connections` sessions. */
export async function burstProbes(
  pool: pg.Pool,
  options: { rows: number; batch: number; connections: number; tenantIds: readonly string[] },
): Promise<ProbeDriveResult> {
  const batches = Math.ceil(options.rows / options.batch);
  const tenants = options.tenantIds;
  let next = 0;
  let inserted = 0;
  const started = performance.now();
  const lane = async () => {
    const client = await pool.connect();
    try {
      for (let b = next++; b < batches; b = next++) {
        const size = Math.min(options.batch, options.rows - b * options.batch);
        const ids = Array.from({ length: size }, (_, i) => tenants[(b * options.batch + i) % tenants.length]);
        await client.query("insert into public.bench_probe (tenant_id) select unnest($1::bigint[])", [ids]);
        inserted += size;
      }
    } finally {
      client.release();
    }
  };
  await Promise.all(Array.from({ length: options.connections }, lane));
  const seconds = (performance.now() - started) / 1000;
  return { inserted, errors: 0, seconds, writesPerSecond: inserted / seconds };
}

export async function clearArrivals(targets: readonly pg.Pool[]): Promise<void> {
  await Promise.all(targets.map((t) => t.query("truncate public.bench_arrival")));
}

async function countArrivals(targets: readonly pg.Pool[]): Promise<number> {
  const counts = await Promise.all(
    targets.map(
      async (t) =>
        (await t.query<{ n: number }>("select count(*)::int as n from public.bench_arrival")).rows[0]?.n ?? 0,
    ),
  );
  return counts.reduce((a, b) => a + b, 0);
}

/** Waits until `expected` probe rows arrived across the targets; throws, naming the shortfall, on timeout. */
export async function waitForArrivals(
  targets: readonly pg.Pool[],
  expected: number,
  what: string,
  timeoutMs = 60_000,
): Promise<void> {
  let seen = 0;
  try {
    await pollUntil(
      `${what}: ${expected} probe rows on the targets`,
      async () => {
        seen = await countArrivals(targets);
        return seen >= expected;
      },
      { timeoutMs, intervalMs: 100 },
    );
  } catch (error) {
    throw new Error(
      `${(error as Error).message} Only ${seen} of ${expected} arrived: ${what} lost or stalled rows.`,
    );
  }
}

/** Every probe's lag (ms), all targets together. */
export async function readLags(targets: readonly pg.Pool[]): Promise<number[]> {
  const parts = await Promise.all(
    targets.map(
      async (t) => (await t.query<{ lag_ms: number }>("select lag_ms from public.bench_arrival")).rows,
    ),
  );
  return parts.flat().map((r) => r.lag_ms);
}

export async function readLagSummary(targets: readonly pg.Pool[]): Promise<LagSummary> {
  return summarizeLags(await readLags(targets));
}

/** The worst lag of each 250 ms of sending time (a diagnostic: periodic stalls show as a rhythm). */
export async function readLagTimeline(targets: readonly pg.Pool[]): Promise<number[]> {
  const worst = new Map<number, number>();
  for (const t of targets) {
    const { rows } = await t.query<{ slot: string; lag: number }>(
      `select floor(extract(epoch from sent_at) * 4)::bigint::text as slot, max(lag_ms) as lag
         from public.bench_arrival group by 1`,
    );
    for (const r of rows) worst.set(Number(r.slot), Math.max(worst.get(Number(r.slot)) ?? 0, r.lag));
  }
  return [...worst].sort((a, b) => a[0] - b[0]).map(([, lag]) => lag);
}

/** Each second of the test's lag p50 and p99 (all targets' probes together), in order. */
export async function readLagPerSecond(targets: readonly pg.Pool[]): Promise<LagSummary[]> {
  const lags = new Map<number, number[]>();
  for (const t of targets) {
    const { rows } = await t.query<{ s: string; lag: number }>(
      "select floor(extract(epoch from sent_at))::bigint::text as s, lag_ms as lag from public.bench_arrival",
    );
    for (const r of rows) {
      const second = lags.get(Number(r.s)) ?? [];
      second.push(r.lag);
      lags.set(Number(r.s), second);
    }
  }
  return [...lags].sort((a, b) => a[0] - b[0]).map(([, values]) => summarizeLags(values));
}

/** Applied rows per second: from the first probe's commit-side timestamp to the last arrival. */
export async function readApplyThroughput(
  targets: readonly pg.Pool[],
): Promise<{ rows: number; seconds: number; rowsPerSecond: number }> {
  const parts = await Promise.all(
    targets.map(
      async (t) =>
        (
          await t.query<{ n: number; first_ms: number | null; last_ms: number | null }>(
            `select count(*)::int as n,
                    extract(epoch from min(sent_at))::double precision * 1000 as first_ms,
                    extract(epoch from max(arrived_at))::double precision * 1000 as last_ms
               from public.bench_arrival`,
          )
        ).rows[0],
    ),
  );
  const rows = parts.reduce((n, p) => n + (p?.n ?? 0), 0);
  const first = Math.min(...parts.map((p) => p?.first_ms ?? Number.POSITIVE_INFINITY));
  const last = Math.max(...parts.map((p) => p?.last_ms ?? Number.NEGATIVE_INFINITY));
  const seconds = (last - first) / 1000;
  return { rows, seconds, rowsPerSecond: seconds > 0 ? rows / seconds : Number.NaN };
}

/** Tenant ids to spread probe rows over (as text, the way the placement hashes them). */
export async function readTenantIds(legacy: pg.Pool): Promise<string[]> {
  const { rows } = await legacy.query<{ id: string }>("select tenant_id::text as id from tenants order by 1");
  if (rows.length === 0) throw new Error("The legacy database has no tenants: the dataset did not load.");
  return rows.map((r) => r.id);
}
