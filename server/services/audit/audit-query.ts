// Reading the audit log: filtered pages (newest first), the distinct actions for the filter, and
// exports. Everything here is read-only; the chain is written only by appendAuditEvent.
import { db } from "../../db";
import type { Prisma } from "../../generated/prisma/client";
import type { TAuditFilter, TAuditListInput } from "../../schemas/audit";
import { type DigestVerification, verifyAuditDigests } from "./audit-digest-verify";
import { verifyAuditChain } from "./audit-log";

function whereOf(filter: TAuditFilter): Prisma.AuditEventWhereInput {
  return {
    ...(filter.actorEmail ? { actorEmail: { contains: filter.actorEmail, mode: "insensitive" } } : {}),
    ...(filter.action ? { action: filter.action } : {}),
    ...(filter.planId ? { planId: filter.planId } : {}),
    ...(filter.from || filter.to
      ? { at: { ...(filter.from ? { gte: filter.from } : {}), ...(filter.to ? { lte: filter.to } : {}) } }
      : {}),
  };
}

export interface AuditEventView {
  seq: string;
  at: Date;
  actorId: string | null;
  actorEmail: string;
  role: string;
  action: string;
  targetType: string;
  targetId: string | null;
  planId: string | null;
  before: unknown;
  after: unknown;
  reason: string | null;
  requestId: string;
  clientRequestId: string | null;
  prevHash: string;
  hash: string;
}

function toView(row: Prisma.AuditEventGetPayload<object>): AuditEventView {
  return { ...row, seq: row.seq.toString(), before: row.before ?? null, after: row.after ?? null };
}

export async function listAuditEvents(input: TAuditListInput) {
  const where = whereOf(input.filter);
  const oldest = input.order === "oldest";
  const past = input.cursor
    ? { seq: oldest ? { gt: BigInt(input.cursor) } : { lt: BigInt(input.cursor) } }
    : null;
  const rows = await db().auditEvent.findMany({
    where: past ? { AND: [where, past] } : where,
    orderBy: { seq: oldest ? "asc" : "desc" },
    take: input.limit + 1,
  });
  const page = rows.slice(0, input.limit).map(toView);
  const total = await db().auditEvent.count({ where });
  return { events: page, nextCursor: rows.length > input.limit ? (page.at(-1)?.seq ?? null) : null, total };
}

export async function listAuditActions(): Promise<string[]> {
  const rows = await db().auditEvent.findMany({
    distinct: ["action"],
    select: { action: true },
    orderBy: { action: "asc" },
  });
  return rows.map((r) => r.action);
}

export type AuditVerification = Awaited<ReturnType<typeof verifyAuditChain>> & {
  digests: DigestVerification;
};

/**
 * The chain recomputed (catches an edited event) and checked against the signed digests (catches
 * an edited event whose successors were all rehashed). `ok` only if both hold.
 */
export async function verifyChain(): Promise<AuditVerification> {
  const chain = await verifyAuditChain(db());
  const digests = await verifyAuditDigests();
  return { ...chain, ok: chain.ok && digests.status !== "diverged", digests };
}

/** All matching events, oldest first, in pages: exports stream instead of loading everything. */
export async function* exportAuditEvents(
  filter: TAuditFilter,
  pageSize = 1000,
): AsyncGenerator<AuditEventView> {
  const where = whereOf(filter);
  let cursor: bigint | undefined;
  for (;;) {
    const rows = await db().auditEvent.findMany({
      where: cursor === undefined ? where : { AND: [where, { seq: { gt: cursor } }] },
      orderBy: { seq: "asc" },
      take: pageSize,
    });
    for (const row of rows) yield toView(row);
    if (rows.length < pageSize) return;
    cursor = rows.at(-1)?.seq;
  }
}

const CSV_COLUMNS: (keyof AuditEventView)[] = [
  "seq",
  "at",
  "actorEmail",
  "role",
  "action",
  "targetType",
  "targetId",
  "planId",
  "reason",
  "before",
  "after",
  "requestId",
  "clientRequestId",
  "prevHash",
  "hash",
];

function csvCell(value: unknown): string {
  if (value === null || value === undefined) return "";
  const text =
    value instanceof Date
      ? value.toISOString()
      : typeof value === "object"
        ? JSON.stringify(value)
        : String(value);
  // Quote always; neutralise spreadsheet formulas so an exported reason cannot execute.
  const safe = /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
  return `"${safe.replaceAll('"', '""')}"`;
}

export function auditCsvHeader(): string {
  return `${CSV_COLUMNS.join(",")}\n`;
}

export function auditCsvRow(event: AuditEventView): string {
  return `${CSV_COLUMNS.map((c) => csvCell(event[c])).join(",")}\n`;
}
