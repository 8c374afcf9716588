// Short-lived connections to source and shard databases, with errors a person can act on.
import pg from "pg";

export interface ConnectOptions {
  timeoutMs?: number;
  applicationName?: string;
}

function describeTarget(connectionString: string): {
  host: string;
  port: string;
  user: string;
  database: string;
} {
  try {
    const url = new URL(connectionString);
    return {
      host: url.hostname,
      port: url.port || "5432",
      user: decodeURIComponent(url.username),
      database: decodeURIComponent(url.pathname.replace(/^\//, "")),
    };
  } catch {
    return { host: "?", port: "?", user: "?", database: "?" };
  }
}

/** Turns a driver error into a sentence that names the server and says what to check. */
export function describeConnectionError(error: unknown, connectionString: string, timeoutMs = 5000): string {
  const { host, port, user, database } = describeTarget(connectionString);
  const where = `${host}:${port}`;
  const e = error as { code?: string; message?: string };
  switch (e.code) {
    case "ECONNREFUSED":
      return `Nothing is listening at ${where} (connection refused). Check the host and port, and that the server is running.`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `The host "${host}" cannot be resolved. Check the spelling of the host name.`;
    case "ETIMEDOUT":
      return `No answer from ${where}. Check the host, the port and any firewall in between.`;
    case "28P01":
    case "28000":
      return `${where} refused the credentials for user "${user}". Check the user name and password.`;
    case "3D000":
      return `Database "${database}" does not exist on ${where}. Check the database name in the URL.`;
    case "53300":
      return `${where} has no free connections (too many clients). Try again, or raise max_connections.`;
  }
  if (/timeout/i.test(e.message ?? "")) {
    return `No answer from ${where} within ${Math.round(timeoutMs / 1000)} s. Check the host, the port and any firewall in between.`;
  }
  return `Could not connect to ${where}: ${e.message ?? String(error)}`;
}

export class ConnectionFailedError extends Error {
  constructor(message: string, options: { cause: unknown }) {
    super(message, options);
    this.name = "ConnectionFailedError";
  }
}

/** Runs fn with a fresh client and always closes it. Connection failures become ConnectionFailedError. */
export async function withClient<T>(
  connectionString: string,
  fn: (client: pg.Client) => Promise<T>,
  options: ConnectOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const client = new pg.Client({
    connectionString,
    connectionTimeoutMillis: timeoutMs,
    application_name: options.applicationName ?? "shardshift",
  });
  // An idle client can still emit errors (server restart); without a listener that kills the process.
  client.on("error", () => {});
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    throw new ConnectionFailedError(describeConnectionError(error, connectionString, timeoutMs), {
      cause: error,
    });
  }
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}
