// What a database server really is, as opposed to what its URL says.
//
// A host name is not an identity: "localhost" and "127.0.0.1", a DNS alias or a second port on one
// machine all reach the same database. If two registrations can name one database, a plan may copy
// legacy into itself and "empty the shard tables first" may TRUNCATE legacy. So every registered
// database is identified by what the server reports: the cluster's system_identifier (unique per
// initdb) and the database's oid (unique inside the cluster), read over the same connection the
// engine would use. The address the server says it was reached at is shown and audited beside it.
import type pg from "pg";

export interface ServerIdentity {
  /** pg_control_system().system_identifier, decimal text (a bigint: beyond JavaScript's numbers). */
  systemIdentifier: string;
  /** The database's oid in its cluster, decimal text. */
  databaseOid: string;
  /** current_database(), as the server names it. */
  databaseName: string;
  /** inet_server_addr():inet_server_port(), or "local socket" for a Unix-socket connection. */
  serverAddress: string;
}

export const IDENTIFY_SERVER_SQL = `select
  (select system_identifier::text from pg_control_system()) as system_identifier,
  (select oid::text from pg_database where datname = current_database()) as database_oid,
  current_database() as database_name,
  host(inet_server_addr()) as address,
  inet_server_port() as port`;

interface IdentityRow {
  system_identifier: string;
  database_oid: string;
  database_name: string;
  address: string | null;
  port: number | null;
}

export function identityFromRow(row: IdentityRow | undefined): ServerIdentity {
  if (!row?.system_identifier || !row.database_oid) {
    throw new Error("The server did not report its system identifier; it cannot be told apart from others.");
  }
  const address = row.address ? (row.address.includes(":") ? `[${row.address}]` : row.address) : null;
  return {
    systemIdentifier: row.system_identifier,
    databaseOid: row.database_oid,
    databaseName: row.database_name,
    serverAddress: address ? `${address}:${row.port}` : `local socket (port ${row.port ?? "?"})`,
  };
}

export async function readServerIdentity(client: pg.ClientBase): Promise<ServerIdentity> {
  try {
    const { rows } = await client.query<IdentityRow>(IDENTIFY_SERVER_SQL);
    return identityFromRow(rows[0]);
  } catch (error) {
    if ((error as { code?: string }).code === "42501") {
      throw new Error(
        "The user may not read pg_control_system(), so this server cannot be told apart from others: " +
          "grant it (GRANT EXECUTE ON FUNCTION pg_control_system() TO the user, or GRANT pg_monitor), then try again.",
        { cause: error },
      );
    }
    throw error;
  }
}

export function sameDatabase(
  a: { systemIdentifier: string | null; databaseOid: string | null },
  b: { systemIdentifier: string | null; databaseOid: string | null },
): boolean {
  return (
    a.systemIdentifier !== null &&
    a.databaseOid !== null &&
    a.systemIdentifier === b.systemIdentifier &&
    a.databaseOid === b.databaseOid
  );
}

/** "system 7321…/oid 16384 at 127.0.0.1:5432", for messages. */
export function describeIdentity(identity: {
  systemIdentifier: string | null;
  databaseOid: string | null;
  serverAddress?: string | null;
}): string {
  const at = identity.serverAddress ? ` at ${identity.serverAddress}` : "";
  return `system ${identity.systemIdentifier ?? "?"}/oid ${identity.databaseOid ?? "?"}${at}`;
}
