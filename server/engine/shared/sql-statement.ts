// The one shape of a SQL statement in the engine: every builder returns text and its values, and a
// thin executor runs it (pg-boss's shape), so statements are testable without a database.
export interface SqlStatement {
  text: string;
  values: unknown[];
}
