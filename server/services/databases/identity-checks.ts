// The refusals that keep one database from being used under two names: the control plane's own
// database, a second registration of a registered database, and a registration whose server now
// answers as a different database. Each message names the database the server really is.
import { db } from "../../db";
import type { Database } from "../../generated/prisma/client";
import {
  describeIdentity,
  IDENTIFY_SERVER_SQL,
  identityFromRow,
  type ServerIdentity,
} from "./server-identity";

/** The control plane's own database, as its server reports it (through Prisma's connection). */
export async function controlPlaneIdentity(): Promise<ServerIdentity> {
  const rows = await db().$queryRawUnsafe<Parameters<typeof identityFromRow>[0][]>(IDENTIFY_SERVER_SQL);
  return identityFromRow(rows[0]);
}

export function identityColumns(identity: ServerIdentity) {
  return {
    systemIdentifier: identity.systemIdentifier,
    databaseOid: identity.databaseOid,
    serverAddress: identity.serverAddress,
    identifiedAt: new Date(),
  };
}

export function controlPlaneMessage(identity: ServerIdentity): string {
  return (
    `This is Shardshift's own control-plane database "${identity.databaseName}" (${describeIdentity(identity)}): ` +
    "the control plane keeps its plans and audit log there, and no plan may read or write it."
  );
}

export function registeredAsMessage(row: Database, identity: ServerIdentity): string {
  return (
    `This is the ${row.kind} database "${identity.databaseName}", already registered as "${row.name}" ` +
    `(${describeIdentity(identity)}): one database under two names could make a plan copy into its own ` +
    "source, or empty it as a shard."
  );
}

export function changedIdentityMessage(row: Database, live: ServerIdentity): string {
  return (
    `"${row.name}" now answers as database "${live.databaseName}" (${describeIdentity(live)}), not the one it ` +
    `was registered as (${describeIdentity(row)}): its host name or server changed. Plans on it are refused ` +
    "until it answers as registered again; if the change is intended, register the new database under a new name."
  );
}

/** Why this identity may not be registered (again), or null. */
export async function identityConflict(
  identity: ServerIdentity,
  options: { excludeId?: string } = {},
): Promise<string | null> {
  const control = await controlPlaneIdentity();
  if (
    control.systemIdentifier === identity.systemIdentifier &&
    control.databaseOid === identity.databaseOid
  ) {
    return controlPlaneMessage(identity);
  }
  const other = await db().database.findFirst({
    where: {
      systemIdentifier: identity.systemIdentifier,
      databaseOid: identity.databaseOid,
      ...(options.excludeId ? { id: { not: options.excludeId } } : {}),
    },
  });
  return other ? registeredAsMessage(other, identity) : null;
}

export function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: string } | null)?.code === "P2002";
}
