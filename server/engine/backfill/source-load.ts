// How busy legacy is, as the backfill's back-off sees it: active client connections, and the
// operator's own load query (optional), read every second while a table is copied.
//
// The load query is an admin's SQL, run as the registered legacy user (so only admins, who hold
// that user's credentials anyway, may set it): wrapped as a subquery (one SELECT: no second
// statement, no data-modifying WITH, at most two rows read back), in a READ ONLY transaction, under
// a short statement timeout, on a connection of its own that is discarded afterwards (nothing it
// sets survives), and it must return exactly one number. The same checks run when the setting is
// saved, so a query that cannot work is refused there with the reason, not discovered mid-backfill.
//
// Whatever that user can read, the query can read, so nothing it returns is ever echoed: messages
// carry the number it returned, or the class of its error (SQLSTATE and condition name) and where
// in the query it happened — never the server's error text, which quotes values
// (`invalid input syntax for type integer: "<a value from some table>"`).
import type pg from "pg";
import { PostgresError } from "pg-error-enum";
import { checkOut } from "../sql/pools";

/** A load query that runs too long is itself a sign of load: it is cut off, and reported. */
const LOAD_QUERY_TIMEOUT_MS = 2_000;

export class LoadQueryError extends Error {}

/** SQLSTATE → condition name ("42601" → "syntax_error"), as PostgreSQL's manual lists them. */
const CONDITION_NAMES = new Map<string, string>(
  Object.entries(PostgresError).map(([name, code]) => [code, name.toLowerCase()]),
);

/** The wrapper readLoadQuery puts around the query: error positions are reported without it. */
const WRAPPER_PREFIX = "select * from (";

function errorClass(error: { code: string; position?: string }): string {
  const name = CONDITION_NAMES.get(error.code) ?? "error";
  const at = Number(error.position) - WRAPPER_PREFIX.length;
  return `${name} (SQLSTATE ${error.code})${at > 0 ? ` at character ${at}` : ""}`;
}

function describeValue(raw: unknown): string {
  if (raw === null || raw === undefined) return "null";
  if (typeof raw === "string") return "text that is not a number";
  return `a ${typeof raw} value`;
}

export async function activeConnections(client: pg.Pool | pg.ClientBase): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    "select count(*)::int as n from pg_stat_activity where state = 'active' and backend_type = 'client backend'",
  );
  return rows[0]?.n ?? 0;
}

/** Runs the load query once and returns its number; a LoadQueryError says what is wrong with it. */
export async function readLoadQuery(client: pg.ClientBase, query: string): Promise<number> {
  await client.query(`begin read only; set local statement_timeout = ${LOAD_QUERY_TIMEOUT_MS}`);
  let result: pg.QueryArrayResult<unknown[]>;
  try {
    // queryMode "extended" (pg ≥ 8.9; not in its types) makes the server refuse a second statement.
    const text = `${WRAPPER_PREFIX}${query.replace(/[\s;]+$/, "")}\n) as load_query limit 2`;
    const config = { text, rowMode: "array", queryMode: "extended" } as pg.QueryArrayConfig;
    result = await client.query<unknown[]>(config);
  } catch (error) {
    await client.query("rollback").catch(() => {});
    const e = error as { code?: string; position?: string };
    if (e.code === "57014") {
      throw new LoadQueryError(
        `The load query ran longer than ${LOAD_QUERY_TIMEOUT_MS / 1000} s on legacy and was cancelled.`,
      );
    }
    if (e.code)
      throw new LoadQueryError(`The load query failed on legacy: ${errorClass({ ...e, code: e.code })}.`);
    throw error;
  }
  await client.query("commit");
  // At most two rows are read back (limit 2): two means "more than one".
  const rows = result.rows.length === 0 ? "no rows" : result.rows.length === 1 ? "1 row" : "several rows";
  const shape = `${rows} of ${result.fields.length} column${result.fields.length === 1 ? "" : "s"}`;
  if (result.rows.length !== 1 || result.fields.length !== 1) {
    throw new LoadQueryError(`The load query must return one row with one number; it returned ${shape}.`);
  }
  const raw = result.rows[0]?.[0];
  const value =
    typeof raw === "number" ? raw : typeof raw === "string" && raw.trim() !== "" ? Number(raw) : Number.NaN;
  if (!Number.isFinite(value)) {
    throw new LoadQueryError(`The load query must return a number; it returned ${describeValue(raw)}.`);
  }
  return value;
}

export interface SourceLoadLimits {
  sourceBusyConnections: number;
  sourceLoadQuery: string;
  sourceLoadThreshold: number;
}

/**
 * Why legacy counts as busy right now, or null when it does not. Runs on connections of its own
 * from `pool`: a slice's copy connection may be inside a chunk's snapshot at that moment.
 */
export async function sourceBusyReason(pool: pg.Pool, limits: SourceLoadLimits): Promise<string | null> {
  const active = await activeConnections(pool);
  if (active > limits.sourceBusyConnections) {
    return `legacy has ${active} active connections (limit ${limits.sourceBusyConnections})`;
  }
  if (limits.sourceLoadQuery) {
    const client = await checkOut(pool);
    let value: number;
    try {
      value = await readLoadQuery(client, limits.sourceLoadQuery);
    } finally {
      client.release(true);
    }
    if (value > limits.sourceLoadThreshold) {
      return `the load query returned ${value} (back-off above ${limits.sourceLoadThreshold})`;
    }
  }
  return null;
}
