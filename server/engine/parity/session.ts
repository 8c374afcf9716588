// Parity sessions: every connection that renders rows as text for hashing or diffing runs with the
// same pinned settings, so two equal rows render to the same bytes on legacy and on every shard.
//
// Why (the "parity false positives" trap): `x::text` is the server's output function, and several
// output functions read session settings. A shard whose pool connects with TimeZone=Europe/Paris
// renders every timestamptz differently from a legacy pool in UTC, and the whole table "drifts".
//
// Invariants:
// - Hashing and row diffs only take a `ParityClient`, which only `withParitySession` hands out: the
//   type system refuses a connection whose settings were not pinned.
// - Settings are session-level (SET, not SET LOCAL), so a parity pass never needs one long
//   transaction (a long snapshot holds back vacuum on legacy); they are RESET before the connection
//   goes back to its pool, and a connection that cannot be reset is destroyed, never reused.
// - Before comparing databases, `assertComparableSessions` checks what settings cannot pin: the
//   server encoding (the bytes that are hashed), the hash function itself (a canary value), the
//   rendering of a canary row, and — for tables ordered by a text key — the database collation
//   (key ranges would select different rows on each side).
import type pg from "pg";
import { RENDERING_SETTINGS, settingsSql } from "../sql/rendering";

/**
 * Settings that change a value's text rendering, pinned on both sides. `jit` and
 * `default_transaction_read_only` do not change renderings: JIT compilation costs more than a
 * chunk's hash takes, and a parity session never writes.
 */
export const PARITY_SESSION_SETTINGS: Readonly<Record<string, string>> = {
  ...RENDERING_SETTINGS,
  // regclass, regtype and regproc render qualified or not depending on search_path.
  search_path: "public",
  jit: "off",
  default_transaction_read_only: "on",
};

declare const pinned: unique symbol;

/** A connection whose rendering settings are pinned; only `withParitySession` creates one. */
export type ParityClient = pg.ClientBase & { readonly [pinned]: true };

function setStatement(): string {
  return settingsSql(PARITY_SESSION_SETTINGS, "session");
}

function resetStatement(): string {
  return Object.keys(PARITY_SESSION_SETTINGS)
    .map((name) => `reset ${name}`)
    .join("; ");
}

/**
 * Checks a connection out of `pool`, pins the parity settings, runs `fn`, then resets them and
 * returns the connection. `fn` must not leave a transaction open.
 */
export async function withParitySession<T>(
  pool: pg.Pool,
  fn: (client: ParityClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  // A checked-out client has no 'error' listener of the pool's: a session the server ends while
  // it is idle here (pg_terminate_backend, a restart, between two of a pass's queries — legacy's
  // waits for the shards' scans and the throttle) emitted an unheard 'error', which ends the
  // worker process. Heard here: the pass's next query on it fails and the pass fails cleanly; the
  // connection is destroyed, not given back.
  let lost: Error | undefined;
  const onLost = (error: Error) => {
    lost ??= error;
  };
  client.on("error", onLost);
  try {
    await client.query(setStatement());
    return await fn(client as pg.PoolClient & ParityClient);
  } catch (error) {
    // A failed statement may leave the connection in an aborted transaction: roll it back so the reset works.
    await client.query("rollback").catch(() => {});
    throw error;
  } finally {
    broken =
      lost ??
      (await client.query(resetStatement()).then(
        () => undefined,
        (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
      ));
    client.off("error", onLost);
    client.release(broken ?? lost);
  }
}

/** Pins a session on legacy and on every shard at once (one connection each), for a compare or a pass. */
export async function withParitySessions<T>(
  legacy: pg.Pool,
  shards: readonly pg.Pool[],
  fn: (legacy: ParityClient, shards: ParityClient[]) => Promise<T>,
): Promise<T> {
  const open = async (index: number, taken: ParityClient[]): Promise<T> => {
    const pool = shards[index];
    if (pool === undefined) return fn(taken[0] as ParityClient, taken.slice(1));
    return withParitySession(pool, (client) => open(index + 1, [...taken, client]));
  };
  return withParitySession(legacy, (client) => open(0, [client]));
}

export interface SessionFingerprint {
  serverEncoding: string;
  collation: string;
  serverVersion: number;
  /** hashtextextended of a fixed text: differs if the hash function does (another build or byte order). */
  hashCanary: string;
  /** A row of awkward types rendered under the pinned settings. */
  renderingCanary: string;
}

const FINGERPRINT_SQL = `
select current_setting('server_encoding') as server_encoding,
       (select datcollate from pg_database where datname = current_database())::text as collation,
       current_setting('server_version_num')::int as server_version,
       hashtextextended('shardshift parity canary: ü ∑ 😀', 0)::text || ' ' ||
         hash_record_extended(row(42::bigint, true, ('ü ∑'::text collate "C"), '5ae2fb6d-2c4c-4a4c-8b6e-2f1f5e3a9d01'::uuid,
           date '2001-02-03', timestamptz '2001-02-03 04:05:06.789+07', '\\x00ff'::bytea, '1.50'::text), 0)::text as hash_canary,
       row(timestamptz '2001-02-03 04:05:06.789+07', timestamp '2001-02-03 04:05:06', date '2001-02-03',
           interval '1 day 2 hours 3.5 seconds', 0.1::float8, 1e-7::float4, '\\x00ff'::bytea,
           12.34::numeric::money, '{"b": 1, "a": [1.50, null]}'::jsonb, 'pg_class'::regclass,
           numrange(1.5, 2.5))::text as rendering_canary`;

export async function sessionFingerprint(client: ParityClient): Promise<SessionFingerprint> {
  const { rows } = await client.query<{
    server_encoding: string;
    collation: string;
    server_version: number;
    hash_canary: string;
    rendering_canary: string;
  }>(FINGERPRINT_SQL);
  const row = rows[0];
  if (!row) throw new Error("the server returned no row for the parity session fingerprint");
  return {
    serverEncoding: row.server_encoding,
    collation: row.collation,
    serverVersion: row.server_version,
    hashCanary: row.hash_canary,
    renderingCanary: row.rendering_canary,
  };
}

export class IncomparableDatabasesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IncomparableDatabasesError";
  }
}

/**
 * Refuses to compare databases whose hashes could differ for equal rows. `names[i]` labels
 * `clients[i]` in the message (e.g. "legacy", "shard-1"). Pass `orderedByText` when some table's
 * key order depends on the collation.
 */
export async function assertComparableSessions(
  clients: readonly ParityClient[],
  names: readonly string[],
  options: { orderedByText?: boolean } = {},
): Promise<SessionFingerprint[]> {
  const prints: SessionFingerprint[] = [];
  for (const client of clients) prints.push(await sessionFingerprint(client));
  const [reference] = prints;
  if (!reference) return prints;
  const label = (i: number) => names[i] ?? `database ${i}`;
  for (const [i, print] of prints.entries()) {
    if (print.serverVersion < 140_000) {
      throw new IncomparableDatabasesError(
        `${label(i)} runs PostgreSQL ${Math.floor(print.serverVersion / 10_000)}; parity needs 14 or later ` +
          "(hash_record_extended, TID range scans). Upgrade it, or compare rows instead.",
      );
    }
    if (print.serverEncoding !== reference.serverEncoding) {
      throw new IncomparableDatabasesError(
        `${label(i)} stores text as ${print.serverEncoding} but ${label(0)} as ${reference.serverEncoding}: ` +
          "equal rows would hash differently. Create the shard databases with the legacy encoding, then run parity again.",
      );
    }
    if (print.hashCanary !== reference.hashCanary) {
      throw new IncomparableDatabasesError(
        `the hash functions give ${print.hashCanary} on ${label(i)} but ${reference.hashCanary} on ${label(0)} ` +
          `(server versions ${print.serverVersion} and ${reference.serverVersion}): in-database hashes cannot be compared. ` +
          "Run legacy and shards on servers of the same architecture and major version, or compare rows instead.",
      );
    }
    if (print.renderingCanary !== reference.renderingCanary) {
      throw new IncomparableDatabasesError(
        `the same values render differently on ${label(i)} (${print.renderingCanary}) and ${label(0)} ` +
          `(${reference.renderingCanary}) even with pinned settings; parity would report false drift. ` +
          "Check the servers' versions and extensions, then run parity again.",
      );
    }
    if (options.orderedByText && print.collation !== reference.collation) {
      throw new IncomparableDatabasesError(
        `${label(i)} sorts text with collation ${print.collation} but ${label(0)} with ${reference.collation}: ` +
          "key ranges over text keys would select different rows on each side. Create the shard databases " +
          "with the legacy collation, then run parity again.",
      );
    }
  }
  return prints;
}
