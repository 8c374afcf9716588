// A plan's databases checked by what their servers report, not by registration ids: when a plan is
// created and again before its data movement starts (a host name may point elsewhere by then).
//
// Refused, each with the database named as it really is:
// - any of them being the control plane's own database;
// - a registered database that now answers as another one (a changed host name or server);
// - two of the plan's databases being one database (legacy again as a shard, a shard twice);
// - one of them being another registration's database (registered before identities were read);
// - a movement into a database another plan's running movement reads from or writes to.
import type pg from "pg";
import { db } from "../../db";
import { ConnectionFailedError, withClient } from "../../engine/sql/connect";
import { AppError } from "../../errors";
import type { Database } from "../../generated/prisma/client";
import type { Actor } from "../actor";
import { appendAuditEvent } from "../audit/audit-log";
import { connectionUrlFor } from "./databases";
import {
  changedIdentityMessage,
  controlPlaneIdentity,
  controlPlaneMessage,
  identityColumns,
  isUniqueViolation,
  registeredAsMessage,
} from "./identity-checks";
import { describeIdentity, readServerIdentity, type ServerIdentity, sameDatabase } from "./server-identity";

interface Member {
  row: Database;
  role: "legacy" | "shard";
  field: "sourceDatabaseId" | "shardDatabaseIds";
}

async function identify(member: Member, verb: string): Promise<ServerIdentity> {
  const what = `The ${member.role === "legacy" ? "legacy database" : "shard"} "${member.row.name}"`;
  try {
    return await withClient(await connectionUrlFor(member.row.id), readServerIdentity, { timeoutMs: 10_000 });
  } catch (error) {
    if (error instanceof ConnectionFailedError) {
      throw new AppError("BAD_REQUEST", `${what} is unreachable: ${error.message} ${verb}`, {
        field: member.field,
      });
    }
    throw error;
  }
}

/**
 * Reads every database's identity from its server and refuses the plan if any two are one
 * database, or one is the control plane. Records identities first read here (audited). Returns
 * the rows as stored afterwards.
 */
export async function checkPlanDatabases(
  actor: Actor,
  source: Database,
  shards: Database[],
  verb = "No plan was created.",
): Promise<{ source: Database; shards: Database[] }> {
  const members: Member[] = [
    { row: source, role: "legacy", field: "sourceDatabaseId" },
    ...shards.map((row): Member => ({ row, role: "shard", field: "shardDatabaseIds" })),
  ];
  const live = await Promise.all(members.map((m) => identify(m, verb)));
  const control = await controlPlaneIdentity();
  const refuse = (member: Member, why: string) =>
    new AppError("CONFLICT", `"${member.row.name}" cannot be in this plan. ${why} ${verb}`, {
      field: member.field,
    });

  for (const [i, member] of members.entries()) {
    const identity = live[i] as ServerIdentity;
    if (sameDatabase(control, identity)) throw refuse(member, controlPlaneMessage(identity));
    if (member.row.systemIdentifier !== null && !sameDatabase(member.row, identity)) {
      throw refuse(member, changedIdentityMessage(member.row, identity));
    }
    for (const [j, earlier] of members.slice(0, i).entries()) {
      if (sameDatabase(live[j] as ServerIdentity, identity)) {
        throw refuse(
          member,
          `It is the same database as "${earlier.row.name}" (the plan's ${earlier.role === "legacy" ? "legacy database" : "shard"}): this is the ${earlier.row.kind} database "${identity.databaseName}" (registered as "${earlier.row.name}" and "${member.row.name}"), ${describeIdentity(identity)}. A plan's source and shards must be different databases.`,
        );
      }
    }
    const other = await db().database.findFirst({
      where: {
        systemIdentifier: identity.systemIdentifier,
        databaseOid: identity.databaseOid,
        id: { notIn: members.map((m) => m.row.id) },
      },
    });
    if (other) throw refuse(member, registeredAsMessage(other, identity));
  }

  const stored = await Promise.all(
    members.map(async (member, i) => {
      const identity = live[i] as ServerIdentity;
      if (member.row.systemIdentifier !== null) {
        return db().database.update({
          where: { id: member.row.id },
          data: { serverAddress: identity.serverAddress, identifiedAt: new Date() },
        });
      }
      // First identification of a database registered before identities were read: claimed with
      // a conditional update, so two plans identifying it at once record (and audit) it once.
      try {
        return await db().$transaction(async (tx) => {
          const claimed = await tx.database.updateMany({
            where: { id: member.row.id, systemIdentifier: null },
            data: identityColumns(identity),
          });
          if (claimed.count === 1) {
            await appendAuditEvent(tx, {
              actor,
              action: "database.identify",
              target: { type: "database", id: member.row.id },
              before: { name: member.row.name, systemIdentifier: null, databaseOid: null },
              after: { name: member.row.name, ...identity },
            });
          }
          return tx.database.findUniqueOrThrow({ where: { id: member.row.id } });
        });
      } catch (error) {
        // Another registration of this database was identified at the same moment.
        if (!isUniqueViolation(error)) throw error;
        const other = await db().database.findFirst({
          where: { systemIdentifier: identity.systemIdentifier, databaseOid: identity.databaseOid },
        });
        throw other ? refuse(member, registeredAsMessage(other, identity)) : error;
      }
    }),
  );
  return { source: stored[0] as Database, shards: stored.slice(1) };
}

/**
 * Refuses a connection that does not reach the database `row` was identified as. Identities are
 * checked on one connection and work is done on another, opened by URL again: a host name that
 * points elsewhere by then (DNS, failover, a moved alias) would have "empty the shard tables first"
 * TRUNCATE whatever answers — legacy included. Ask the connection that does the work.
 */
export async function assertConnectedTo(client: pg.ClientBase, row: Database, verb: string): Promise<void> {
  const live = await readServerIdentity(client);
  if (!sameDatabase(row, live)) {
    throw new AppError("CONFLICT", `${changedIdentityMessage(row, live)} ${verb}`);
  }
}

/**
 * One movement per database: refuses when another plan's live movement writes into one of these
 * shards, reads from one of them as its legacy, or writes into this plan's legacy. Compares
 * identities (and ids, for rows of other plans not identified yet).
 */
export async function assertNoOtherMovementOnSameDatabases(
  planId: string,
  databases: { source: Database; shards: Database[] },
): Promise<void> {
  const matchAny = (rows: Database[]) => ({
    OR: [
      { id: { in: rows.map((r) => r.id) } },
      ...rows
        .filter((r) => r.systemIdentifier !== null && r.databaseOid !== null)
        .map((r) => ({ systemIdentifier: r.systemIdentifier, databaseOid: r.databaseOid })),
    ],
  });
  const busy = await db().dataMovement.findFirst({
    where: {
      planId: { not: planId },
      status: { not: "cancelled" },
      plan: {
        OR: [
          { shards: { some: { database: matchAny(databases.shards) } } },
          { sourceDatabase: matchAny(databases.shards) },
          { shards: { some: { database: matchAny([databases.source]) } } },
        ],
      },
    },
    include: {
      plan: { select: { name: true, sourceDatabase: true, shards: { include: { database: true } } } },
    },
  });
  if (!busy) return;
  const same = (a: Database, b: Database) => a.id === b.id || sameDatabase(a, b);
  const theirShards = busy.plan.shards.map((s) => s.database);
  const named = (d: Database) => `"${d.name}" (${describeIdentity(d)})`;
  const intoShard = databases.shards.find((o) => theirShards.some((t) => same(t, o)));
  const fromTheirSource = databases.shards.find((o) => same(busy.plan.sourceDatabase, o));
  const what = intoShard
    ? `is moving data into the same shard ${named(intoShard)}`
    : fromTheirSource
      ? `reads from ${named(fromTheirSource)} as its legacy database, which this plan would fill as a shard`
      : `is moving data into ${named(databases.source)}, this plan's legacy database`;
  throw new AppError(
    "CONFLICT",
    `Plan "${busy.plan.name}" ${what} (its movement is ${busy.status}). Cancel it first; two movements on one database would overwrite each other. Nothing was started.`,
  );
}
