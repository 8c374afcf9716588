// Signed digests of the audit chain's head, the way CloudTrail's digest files anchor its logs.
//
// Why: the hash chain has no secret. Whoever can rewrite audit_event (a database superuser) can
// alter an event and rehash every later one, and the chain verifies again. A digest records the
// head (last seq, its hash, the number of events up to it) and the previous digest's signature,
// signed with HMAC-SHA256 under SHARDSHIFT_AUDIT_KEY, a key that lives in the environment of the
// worker and the web server and never in the control-plane database. A rewritten history no longer
// matches the digests signed before the rewrite, and the rewriter cannot sign new ones.
//
// Invariants:
// - A digest is signed under the audit chain's advisory lock, so its head, count and predecessor
//   are one consistent moment of the chain (no event can commit between the reads).
// - Digests are append-only (trigger) and chained by prevSignature: one removed from the middle is
//   found. Removing the newest ones cannot be seen from the database alone; that is what the
//   exported digests are for (keep them elsewhere).
// - The worker signs one every SHARDSHIFT_AUDIT_DIGEST_MINUTES (default 5) if events were added;
//   people ask for one (the worker signs it); every export is anchored by a digest of the head it
//   exports (the newest one, if it already covers that head).
import crypto from "node:crypto";
import { db } from "../../db";
import { serverEnv } from "../../env";
import { AppError } from "../../errors";
import type { AuditDigest, Prisma } from "../../generated/prisma/client";
import { QUEUES } from "../../jobs/queue";
import { webQueueClient } from "../../jobs/queue-client";
import type { Actor } from "../actor";
import { AUDIT_CHAIN_LOCK, appendAuditEvent, GENESIS_HASH } from "./audit-log";

export const DIGEST_ALGORITHM = "HMAC-SHA256";
export type DigestReason = "schedule" | "request" | "export";

export interface AuditKey {
  bytes: Buffer;
  /** A fingerprint that names the key without revealing it, so a rotation is recognisable. */
  id: string;
}

export function auditKeyFrom(base64: string | undefined): AuditKey | null {
  if (!base64) return null;
  const bytes = Buffer.from(base64, "base64");
  const id = crypto.createHash("sha256").update("shardshift-audit-key-id\n").update(bytes).digest("hex");
  return { bytes, id: id.slice(0, 16) };
}

export function configuredAuditKey(): AuditKey | null {
  return auditKeyFrom(serverEnv().SHARDSHIFT_AUDIT_KEY);
}

export const NO_AUDIT_KEY_MESSAGE =
  "SHARDSHIFT_AUDIT_KEY is not set, so the audit chain is not anchored by signed digests: a database superuser could rewrite and rehash it unseen. Set it (openssl rand -base64 32) on the web server and the workers.";

interface DigestFields {
  at: Date;
  lastSeq: bigint;
  lastHash: string;
  eventCount: bigint;
  prevSignature: string;
  keyId: string;
  reason: string;
}

/** The exact bytes signed: versioned, one field a line, nothing left to interpretation. */
export function digestPayload(d: DigestFields): string {
  return [
    "shardshift-audit-digest/v1",
    d.at.toISOString(),
    d.lastSeq.toString(),
    d.lastHash,
    d.eventCount.toString(),
    d.prevSignature,
    d.keyId,
    d.reason,
  ].join("\n");
}

export function signDigest(key: AuditKey, d: DigestFields): string {
  return crypto.createHmac("sha256", key.bytes).update(digestPayload(d)).digest("hex");
}

export function digestSignatureValid(key: AuditKey, d: DigestFields & { signature: string }): boolean {
  const expected = Buffer.from(signDigest(key, d), "hex");
  const actual = Buffer.from(d.signature, "hex");
  return expected.length === actual.length && crypto.timingSafeEqual(expected, actual);
}

/**
 * Signs the chain's current head. A scheduled digest is skipped (null) when nothing was appended
 * since the last one, and an export reuses the newest digest when it already covers the head; a
 * requested digest is always made, so it names its moment.
 */
export async function signAuditDigest(
  reason: DigestReason,
  key: AuditKey | null = configuredAuditKey(),
): Promise<AuditDigest | null> {
  if (!key) throw new AppError("PRECONDITION_FAILED", NO_AUDIT_KEY_MESSAGE);
  return db().$transaction(async (tx: Prisma.TransactionClient) => {
    await tx.$executeRaw`select pg_advisory_xact_lock(${AUDIT_CHAIN_LOCK})`;
    const head = await tx.auditEvent.findFirst({
      orderBy: { seq: "desc" },
      select: { seq: true, hash: true },
    });
    const previous = await tx.auditDigest.findFirst({ orderBy: { id: "desc" } });
    const lastSeq = head?.seq ?? 0n;
    if (previous && previous.lastSeq === lastSeq && previous.keyId === key.id) {
      if (reason === "schedule") return null;
      // An export is a GET anyone signed in may repeat: one digest per head, not one per download.
      if (reason === "export") return previous;
    }
    const fields: DigestFields = {
      at: new Date(),
      lastSeq,
      lastHash: head?.hash ?? GENESIS_HASH,
      eventCount: BigInt(await tx.auditEvent.count()),
      prevSignature: previous?.signature ?? GENESIS_HASH,
      keyId: key.id,
      reason,
    };
    return tx.auditDigest.create({
      data: { ...fields, algorithm: DIGEST_ALGORITHM, signature: signDigest(key, fields) },
    });
  });
}

export interface AuditDigestView {
  id: string;
  at: Date;
  lastSeq: string;
  lastHash: string;
  eventCount: string;
  prevSignature: string;
  keyId: string;
  algorithm: string;
  signature: string;
  reason: string;
}

export function toDigestView(d: AuditDigest): AuditDigestView {
  return { ...d, id: d.id.toString(), lastSeq: d.lastSeq.toString(), eventCount: d.eventCount.toString() };
}

export async function listAuditDigests(limit = 20): Promise<AuditDigestView[]> {
  const rows = await db().auditDigest.findMany({ orderBy: { id: "desc" }, take: limit });
  return rows.map(toDigestView);
}

/** Every digest, oldest first, in pages: for export. */
export async function* exportAuditDigests(pageSize = 1000): AsyncGenerator<AuditDigestView> {
  let cursor: bigint | undefined;
  for (;;) {
    const rows = await db().auditDigest.findMany({
      where: cursor === undefined ? {} : { id: { gt: cursor } },
      orderBy: { id: "asc" },
      take: pageSize,
    });
    for (const row of rows) yield toDigestView(row);
    if (rows.length < pageSize) return;
    cursor = rows.at(-1)?.id;
  }
}

/** Someone asks for a digest now: audited, then signed by a worker (the key's home), within seconds. */
export async function requestAuditDigest(actor: Actor): Promise<{ requestedAt: Date }> {
  if (!configuredAuditKey()) throw new AppError("PRECONDITION_FAILED", NO_AUDIT_KEY_MESSAGE);
  const requestedAt = new Date();
  await db().$transaction((tx) =>
    appendAuditEvent(tx, { actor, action: "audit.digest.request", target: { type: "audit" } }),
  );
  const boss = await webQueueClient();
  await boss.send(QUEUES.auditDigest, { reason: "request" }, { singletonKey: "audit-digest" });
  return { requestedAt };
}
