// A whole apply transaction — BEGIN, its statements, the origin stamp, COMMIT — as ONE simple-protocol
// message: one write out, one run on the target, one answer back.
//
// Why: the stamp must ride with the COMMIT in one message (apply.ts), so the common path was two
// messages — the statements under one Sync, then `stamp; commit` — and the target ran and answered
// each separately: two flushes, and the runner woke for each. On two cores shared with a parity
// pass and another plan's backfill every extra wake-up waits its turn for a core, and those waits
// were most of the busy worker's lag tail. One message is also the stamp's strongest guarantee: the
// server runs a simple-protocol message only once it holds all of it, and abandons the rest of it
// at the first error, so the stamp never runs without its writes and its commit after it.
//
// Statements stay prepared: a named statement the connection already parsed (pg's record, kept by
// one-sync-transaction.ts) runs as `EXECUTE name(literals)` — SQL-level EXECUTE reaches the same
// prepared statements as the protocol's Bind. A batch with a named statement not yet parsed here,
// or whose literals would make a large message, returns null: the caller takes the pipelined path,
// which parses it, and the next batch can go in one message.
import pg from "pg";
import { isParsedOn, prepareValue, type SyncStatement } from "./one-sync-transaction";

/** Above this many characters of values, a batch goes the pipelined way (binary-safe, no escaping). */
export const ONE_MESSAGE_MAX_VALUE_CHARS = 32 * 1024;

/** A bound value as an SQL literal: what Bind would have sent, as text the server reads the same. */
export function sqlLiteral(value: unknown): string {
  const text = prepareValue(value);
  if (text === null || text === undefined) return "NULL";
  if (typeof text !== "string") throw new Error(`cannot render a ${typeof text} value as an SQL literal`);
  return pg.escapeLiteral(text);
}

// A placeholder outside quoted identifiers and string literals (the only quoting our statements use).
const TOKENS = /"(?:[^"]|"")*"|'(?:[^']|'')*'|\$(\d+)/g;

/** The statement's text with every `$n` replaced by its value as a literal. */
export function inlineParameters(text: string, values: readonly unknown[]): string {
  return text.replace(TOKENS, (token: string, index: string | undefined) => {
    if (index === undefined) return token;
    const i = Number(index) - 1;
    if (i < 0 || i >= values.length)
      throw new Error(`statement refers to $${index}, it has ${values.length} values`);
    return sqlLiteral(values[i]);
  });
}

function valueChars(values: readonly unknown[]): number {
  let chars = 0;
  for (const v of values) {
    if (typeof v === "string") chars += v.length;
    else if (Array.isArray(v)) for (const e of v) chars += typeof e === "string" ? e.length + 3 : 4;
  }
  return chars;
}

/**
 * `begin; <statements>; <closing>` as one simple-protocol query text, or null when the batch must
 * take the pipelined path (a named statement not parsed on this connection yet, large values).
 */
export function oneMessageTransactionSql(
  client: pg.ClientBase,
  statements: readonly SyncStatement[],
  closing: string,
): string | null {
  let chars = 0;
  for (const s of statements) {
    if (s.name !== undefined && !isParsedOn(client, s.name, s.text)) return null;
    chars += valueChars(s.values);
    if (chars > ONE_MESSAGE_MAX_VALUE_CHARS) return null;
  }
  const parts = ["begin"];
  for (const s of statements) {
    if (s.name === undefined) parts.push(inlineParameters(s.text, s.values));
    else if (s.values.length === 0) parts.push(`execute ${s.name}`);
    else parts.push(`execute ${s.name}(${s.values.map(sqlLiteral).join(", ")})`);
  }
  parts.push(closing);
  return parts.join("; ");
}
