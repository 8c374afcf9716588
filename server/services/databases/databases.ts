// Topology: the legacy and shard databases Shardshift may touch. Admin-only changes, all audited.
// Connection URLs are encrypted before they reach the store and decrypted only for engine use;
// views returned to the browser carry host/port/database/user and never the URL.
import { db } from "../../db";
import { ConnectionFailedError, withClient } from "../../engine/sql/connect";
import { serverEnv } from "../../env";
import { AppError } from "../../errors";
import type { Database } from "../../generated/prisma/client";
import type { TRegisterDatabaseInput, TTestConnectionInput } from "../../schemas/database";
import { decryptSecret, encryptSecret } from "../../security/secrets";
import type { Actor } from "../actor";
import { appendAuditEvent } from "../audit/audit-log";

export interface DatabaseView {
  id: string;
  name: string;
  kind: "legacy" | "shard";
  host: string;
  port: number;
  databaseName: string;
  username: string;
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

/** The decrypted URL, for the engine only: never return it from an API. */
export async function connectionUrlFor(databaseId: string): Promise<string> {
  const row = await db().database.findUnique({ where: { id: databaseId } });
  if (!row) throw new AppError("NOT_FOUND", `No database with id ${databaseId}.`);
  return decryptSecret(row.urlCiphertext, serverEnv().SHARDSHIFT_SECRET_KEY);
}

export async function probeConnection(url: string): Promise<ConnectionReport> {
  const started = performance.now();
  try {
    return await withClient(url, async (client) => {
      const { rows } = await client.query<{ version: string; wal_level: string }>(
        "select current_setting('server_version') as version, current_setting('wal_level') as wal_level",
      );
      const row = rows[0];
      const warnings: string[] = [];
      if (row && row.wal_level !== "logical") {
        warnings.push(
          `wal_level is "${row.wal_level}": change data capture needs wal_level = logical (set it and restart the server).`,
        );
      }
      return {
        ok: true,
        message: `Connected: PostgreSQL ${row?.version ?? "?"}`,
        serverVersion: row?.version,
        walLevel: row?.wal_level,
        latencyMs: Math.round(performance.now() - started),
        warnings,
      };
    });
  } catch (error) {
    if (error instanceof ConnectionFailedError) return { ok: false, message: error.message, warnings: [] };
    return { ok: false, message: `The connection test failed: ${(error as Error).message}`, warnings: [] };
  }
}

export async function testConnection(input: TTestConnectionInput): Promise<ConnectionReport> {
  const url = "url" in input ? input.url : await connectionUrlFor(input.databaseId);
  return probeConnection(url);
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
  if (!report.ok)
    throw new AppError("BAD_REQUEST", `${report.message} Nothing was registered.`, { field: "url" });

  const url = new URL(input.url);
  const sealed = encryptSecret(input.url, serverEnv().SHARDSHIFT_SECRET_KEY);
  const row = await db().$transaction(async (tx) => {
    const created = await tx.database.create({
      data: {
        name: input.name,
        kind: input.kind,
        host: url.hostname,
        port: Number(url.port || 5432),
        databaseName: decodeURIComponent(url.pathname.replace(/^\//, "")),
        username: decodeURIComponent(url.username),
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
