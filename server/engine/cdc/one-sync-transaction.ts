// Several statements sent as one extended-protocol message sequence closed by a single Sync: the
// server runs them as one implicit transaction (committed at the Sync, rolled back whole if any
// statement fails, every statement after a failure skipped), and answers with one ReadyForQuery.
//
// Why: an apply transaction stamped with its replication origin used to be three queries — BEGIN
// plus the stamp (a simple query), the row statement, COMMIT — each closed by its own Sync, so the
// server flushed three answers and the runner woke three times for one source transaction. At
// 1,000 writes/s most batches are one row; that put CDC's lag p99 at 2.75× native logical
// replication's. One Sync for the whole transaction is what native apply does in-process.
//
// pg's Client sends one Sync per query and, in pipeline mode, accepts only its own Query class:
// this subclasses it and writes Parse/Bind/Execute for every statement, then one Sync.
//
// Prepared statements (named) are parsed once per connection. pg learns that a named statement
// was parsed from ParseComplete, which it credits to `query.name` — ours has none, so this class
// keeps the connection's record itself: on success every statement it parsed is parsed; after a
// failure at statement k, those before k are, those after k are not (the server skipped them), and
// statement k is unknown (its Parse or its Execute failed) — its next use closes the name first
// (closing a statement that does not exist is not an error) and parses it again.
import pg from "pg";

export interface SyncStatement {
  name?: string;
  text: string;
  values: readonly unknown[];
}

/** pg's Connection, the parts used here (not in its public typings). */
interface WireConnection {
  parsedStatements: Record<string, string>;
  submittedNamedStatements: Record<string, string>;
  stream: { cork?: () => void; uncork?: () => void };
  parse(query: { text: string; name?: string; types?: unknown[] }): void;
  bind(config: {
    portal: string;
    statement?: string;
    values: readonly unknown[];
    valueMapper: unknown;
  }): void;
  execute(config: { portal: string; rows?: number }): void;
  close(message: { type: "S" | "P"; name: string }): void;
  sync(): void;
}

/** Statement names whose state on the server is unknown, per connection (see above). */
const unsure = new WeakMap<object, Set<string>>();

/** pg's own value encoding (arrays to array literals), as its Query binds with. */
export const prepareValue: (value: unknown) => unknown = (
  pg as unknown as { utils: { prepareValue: (value: unknown) => unknown } }
).utils.prepareValue;

/**
 * pg's Query, untyped: the pipeline accepts only its instances, and the handlers overridden below
 * are its internal interface (not in the typings).
 */
const PgQuery = pg.Query as unknown as new (config: { text: string }) => object;

class OneSyncQuery extends PgQuery {
  private completed = 0;
  private parsedHere: string[] = [];
  private settled = false;

  constructor(
    private readonly statements: readonly SyncStatement[],
    private readonly settle: (error: Error | null) => void,
  ) {
    super({ text: "" });
  }

  submit(connection: WireConnection): Error | null {
    // A name the connection holds for another text would Bind (or EXECUTE, one-message-transaction.ts)
    // that other statement with these values: refused before anything is written, as pg's own Query
    // refuses it (break-one-message-bookkeeping.test.ts).
    for (const s of this.statements) {
      if (s.name === undefined) continue;
      const previous = connection.parsedStatements[s.name] ?? connection.submittedNamedStatements[s.name];
      if (previous !== undefined && previous !== s.text)
        return new Error(
          `Prepared statements must be unique - '${s.name}' was used for a different statement`,
        );
    }
    const doubtful = unsure.get(connection);
    connection.stream.cork?.();
    try {
      for (const s of this.statements) {
        const name = s.name;
        const known =
          name !== undefined &&
          (connection.parsedStatements[name] !== undefined ||
            connection.submittedNamedStatements[name] !== undefined);
        if (!known || name === undefined) {
          if (name !== undefined && doubtful?.has(name)) connection.close({ type: "S", name });
          connection.parse({ text: s.text, name });
          if (name !== undefined) {
            connection.submittedNamedStatements[name] = s.text;
            this.parsedHere.push(name);
          }
        }
        connection.bind({ portal: "", statement: name, values: s.values, valueMapper: prepareValue });
        connection.execute({ portal: "" });
      }
      connection.sync();
    } finally {
      connection.stream.uncork?.();
    }
    return null;
  }

  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}

  handleCommandComplete(): void {
    this.completed++;
  }

  handleError(error: Error, connection: WireConnection): void {
    if (this.settled) return;
    this.settled = true;
    // The statement that failed is the one after the last that completed.
    const failedAt = this.statements[this.completed]?.name;
    const before = new Set(this.statements.slice(0, this.completed).flatMap((s) => (s.name ? [s.name] : [])));
    for (const name of this.parsedHere) {
      delete connection.submittedNamedStatements?.[name];
      if (before.has(name)) connection.parsedStatements[name] = this.textOf(name);
    }
    if (failedAt !== undefined && this.parsedHere.includes(failedAt) && !before.has(failedAt)) {
      let names = unsure.get(connection);
      if (!names) {
        names = new Set();
        unsure.set(connection, names);
      }
      names.add(failedAt);
    }
    this.settle(error);
  }

  handleReadyForQuery(connection: WireConnection): void {
    if (this.settled) return;
    this.settled = true;
    const doubtful = unsure.get(connection);
    for (const name of this.parsedHere) {
      delete connection.submittedNamedStatements[name];
      connection.parsedStatements[name] = this.textOf(name);
      doubtful?.delete(name);
    }
    this.settle(null);
  }

  private textOf(name: string): string {
    return this.statements.find((s) => s.name === name)?.text ?? "";
  }
}

/**
 * Runs `statements` as one implicit transaction with a single Sync. Not inside BEGIN … COMMIT:
 * the Sync commits. Rejects with the first statement's error (nothing of it committed).
 */
export function runInOneSync(client: pg.ClientBase, statements: readonly SyncStatement[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const query = new OneSyncQuery(statements, (error) => (error ? reject(error) : resolve()));
    (client as unknown as { query(q: unknown): void }).query(query);
  });
}

/**
 * Whether the named statement is parsed on the client's connection as `text`, known for sure (a
 * statement whose last Parse failed or is still in flight is not, nor one parsed under this name
 * from another text: EXECUTE would run that other statement).
 */
export function isParsedOn(client: pg.ClientBase, name: string, text: string): boolean {
  const connection = (client as unknown as { connection?: WireConnection }).connection;
  if (!connection || connection.parsedStatements[name] !== text) return false;
  return !unsure.get(connection)?.has(name);
}
