// Topology: the legacy and shard databases Shardshift may touch. Admin-only changes, all audited.
// Connection URLs are encrypted before they reach the store and decrypted only for engine use;
// views returned to the browser carry host/port/database/user and never the URL. Each database is
// also identified by what its server reports (server-identity.ts), so one database cannot be
// registered twice under two names, nor the control plane's own database registered at all.
import { db } from "../../db";
import { ConnectionFailedError, withClient } from "../../engine/sql/connect";
import { serverEnv } from "../../env";
import { AppError } from "../../errors";
import type { Database, Prisma } from "../../generated/prisma/client";
import {
  connectionTextProblem,
  connectionUrlProblem,
  type TRegisterDatabaseInput,
  type TTestConnectionInput,
} from "../../schemas/database";
import { decryptSecret, encryptSecret } from "../../security/secrets";
import type { Actor } from "../actor";
import { appendAuditEvent } from "../audit/audit-log";
import {
  changedIdentityMessage,
  identityColumns,
  identityConflict,
  isUniqueViolation,
} from "./identity-checks";
import { readServerIdentity, type ServerIdentity, sameDatabase } from "./server-identity";

export interface DatabaseView {
  id: string;
  name: string;
  kind: "legacy" | "shard";
  host: string;
  port: number;
  databaseName: string;
  username: string;
  /** What the server reported at its last identification: where it was reached, and what it is. */
  serverAddress: string | null;
  systemIdentifier: string | null;
  databaseOid: string | null;
  identifiedAt: Date | null;
  createdAt: Date;
  usedByPlans: number;
}

export interface ConnectionReport {
  ok: boolean;
  message: string;
  serverVersion?: string;
  walLevel?: string;
  latencyMs?: number;
  warnings: string[];
  /** What answered: read from the server, not from the URL. */
  identity?: ServerIdentity;
}

function toView(row: Database, usedByPlans = 0): DatabaseView {
  return {
    id: row.id,
    name: row.name,
    kind: row.kind,
    host: row.host,
    port: row.port,
    databaseName: row.databaseName,
    username: row.username,
    serverAddress: row.serverAddress,
    systemIdentifier: row.systemIdentifier,
    databaseOid: row.databaseOid,
    identifiedAt: row.identifiedAt,
    createdAt: row.createdAt,
    usedByPlans,
  };
}

export async function listDatabases(): Promise<DatabaseView[]> {
  const rows = await db().database.findMany({
    orderBy: [{ kind: "asc" }, { name: "asc" }],
    include: { _count: { select: { sourceOf: true, shardOf: true } } },
  });
  return rows.map((row) => toView(row, row._count.sourceOf + row._count.shardOf));
}

/** Refuses a URL whose host or query string would connect somewhere other than what it shows. */
export function assertSafeConnectionUrl(url: string, field = "url"): void {
  // The same rule the engine applies before it connects (schemas/database.ts).
  const problem = connectionUrlProblem(url);
  if (problem) throw new AppError("BAD_REQUEST", `${problem} Nothing was changed.`, { field });
}

/** The decrypted URL, for the engine only: never return it from an API. */
export async function connectionUrlFor(databaseId: string): Promise<string> {
  const row = await db().database.findUnique({ where: { id: databaseId } });
  if (!row) throw new AppError("NOT_FOUND", `No database with id ${databaseId}.`);
  const url = decryptSecret(row.urlCiphertext, serverEnv().SHARDSHIFT_SECRET_KEY);
  // A URL stored before parameters were checked must not redirect the engine either.
  assertSafeConnectionUrl(url);
  return url;
}

export async function probeConnection(url: string): Promise<ConnectionReport> {
  const started = performance.now();
  try {
    assertSafeConnectionUrl(url);
    return await withClient(url, async (client) => {
      const { rows } = await client.query<{ version: string; wal_level: string }>(
        "select current_setting('server_version') as version, current_setting('wal_level') as wal_level",
      );
      const identity = await readServerIdentity(client);
      const row = rows[0];
      const warnings: string[] = [];
      if (row && row.wal_level !== "logical") {
        warnings.push(
          `wal_level is "${row.wal_level}": change data capture needs wal_level = logical (set it and restart the server).`,
        );
      }
      return {
        ok: true,
        message: `Connected: PostgreSQL ${row?.version ?? "?"}, database "${identity.databaseName}" at ${identity.serverAddress} (system ${identity.systemIdentifier}, oid ${identity.databaseOid})`,
        serverVersion: row?.version,
        walLevel: row?.wal_level,
        latencyMs: Math.round(performance.now() - started),
        warnings,
        identity,
      };
    });
  } catch (error) {
    if (error instanceof AppError) return { ok: false, message: error.message, warnings: [] };
    if (error instanceof ConnectionFailedError) return { ok: false, message: error.message, warnings: [] };
    return { ok: false, message: `The connection test failed: ${(error as Error).message}`, warnings: [] };
  }
}

/** host:port/database as user, from the URL: what the person typed, never the password. */
function shownTarget(url: string) {
  const parsed = new URL(url);
  return {
    host: parsed.hostname,
    port: Number(parsed.port || 5432),
    databaseName: decodeURIComponent(parsed.pathname.replace(/^\//, "")),
    username: decodeURIComponent(parsed.username),
  };
}

/**
 * Tests a URL (before registering) or a registered database. Audited: it makes the control plane
 * open a connection to an address an admin chose. A registered database's identity is recorded on
 * its first test, and a database that now answers as a different server is reported, not re-recorded.
 */
export async function testConnection(actor: Actor, input: TTestConnectionInput): Promise<ConnectionReport> {
  const row = "url" in input ? null : await db().database.findUnique({ where: { id: input.databaseId } });
  if (!("url" in input) && !row) {
    throw new AppError("NOT_FOUND", "That database is not registered (it may have been removed).");
  }
  const url = "url" in input ? input.url : await connectionUrlFor(input.databaseId);
  // Before anything connects: the probe is audited, and an audit event cannot hold a NUL.
  const text = connectionTextProblem(url);
  if (text) throw new AppError("BAD_REQUEST", `${text} Nothing was tested.`, { field: "url" });
  const report = await probeConnection(url);
  const identity = report.ok ? report.identity : undefined;
  let record = false;
  if (identity) {
    const conflict = await identityConflict(identity, { excludeId: row?.id });
    if (conflict) {
      report.ok = row === null; // a URL that reaches a known database is worth knowing before registering
      if (row) report.message = conflict;
      else report.warnings.push(`${conflict} Registering it again would be refused.`);
    } else if (row && row.systemIdentifier !== null && !sameDatabase(row, identity)) {
      report.ok = false;
      report.message = changedIdentityMessage(row, identity);
    } else {
      record = row !== null;
    }
  }
  const audit = (tx: Prisma.TransactionClient, identityRecorded: boolean) =>
    appendAuditEvent(tx, {
      actor,
      action: "database.connection.test",
      target: { type: "database", id: row?.id ?? null },
      after: {
        ...(row ? { name: row.name } : {}),
        shown: shownTarget(url),
        ok: report.ok,
        message: report.message,
        connectedTo: report.identity ?? null,
        identityRecorded,
      },
    });
  try {
    await db().$transaction(async (tx) => {
      let first = false;
      if (record && row && identity) {
        // The first identification is claimed conditionally: concurrent tests record it once.
        first =
          (
            await tx.database.updateMany({
              where: { id: row.id, systemIdentifier: null },
              data: identityColumns(identity),
            })
          ).count === 1;
        if (!first) {
          await tx.database.update({
            where: { id: row.id },
            data: { serverAddress: identity.serverAddress, identifiedAt: new Date() },
          });
        }
      }
      await audit(tx, first);
    });
  } catch (error) {
    // Another registration of this database was identified at the same moment.
    if (!isUniqueViolation(error) || !identity) throw error;
    report.ok = false;
    report.message = (await identityConflict(identity, { excludeId: row?.id })) ?? report.message;
    await db().$transaction((tx) => audit(tx, false));
  }
  return report;
}

export async function registerDatabase(actor: Actor, input: TRegisterDatabaseInput): Promise<DatabaseView> {
  const existing = await db().database.findUnique({ where: { name: input.name } });
  if (existing) {
    throw new AppError(
      "CONFLICT",
      `A database named "${input.name}" is already registered. Choose another name.`,
      {
        field: "name",
      },
    );
  }
  // Refuse what cannot be reached now: a plan built on it would fail later, far from the cause.
  const report = await probeConnection(input.url);
  if (!report.ok || !report.identity)
    throw new AppError("BAD_REQUEST", `${report.message} Nothing was registered.`, { field: "url" });
  const identity = report.identity;
  const conflict = await identityConflict(identity);
  if (conflict) throw new AppError("CONFLICT", `${conflict} Nothing was registered.`, { field: "url" });

  const sealed = encryptSecret(input.url, serverEnv().SHARDSHIFT_SECRET_KEY);
  try {
    const row = await db().$transaction(async (tx) => {
      const created = await tx.database.create({
        data: {
          name: input.name,
          kind: input.kind,
          ...shownTarget(input.url),
          ...identityColumns(identity),
          urlCiphertext: sealed,
        },
      });
      await appendAuditEvent(tx, {
        actor,
        action: "database.register",
        target: { type: "database", id: created.id },
        after: toView(created),
      });
      return created;
    });
    return toView(row);
  } catch (error) {
    // Two registrations of one database racing each other: the unique identity lets one win.
    if (isUniqueViolation(error)) {
      const raced = await identityConflict(identity);
      const message = raced ?? `A database named "${input.name}" is already registered. Choose another name.`;
      throw new AppError("CONFLICT", `${message} Nothing was registered.`, { field: raced ? "url" : "name" });
    }
    throw error;
  }
}

export async function removeDatabase(
  actor: Actor,
  input: { databaseId: string; reason?: string },
): Promise<void> {
  await db().$transaction(async (tx) => {
    const row = await tx.database.findUnique({
      where: { id: input.databaseId },
      include: { _count: { select: { sourceOf: true, shardOf: true } } },
    });
    if (!row)
      throw new AppError("NOT_FOUND", "That database is not registered (it may have been removed already).");
    const uses = row._count.sourceOf + row._count.shardOf;
    if (uses > 0) {
      throw new AppError(
        "PRECONDITION_FAILED",
        `"${row.name}" is used by ${uses} plan${uses === 1 ? "" : "s"}. Plans keep their topology for the record, so it stays registered; nothing was removed.`,
      );
    }
    await tx.database.delete({ where: { id: row.id } });
    await appendAuditEvent(tx, {
      actor,
      action: "database.remove",
      target: { type: "database", id: row.id },
      before: toView(row),
      reason: input.reason,
    });
  });
}
