// The append-only, hash-chained audit log (invariant 5).
//
// Design:
// - appendAuditEvent runs inside the caller's transaction, so an audited change and its event
//   commit or roll back together: no change without its event, no event without its change.
// - The chain is serialised by a transaction-scoped advisory lock: each writer reads the latest
//   hash and inserts its successor while holding it, so concurrent writers never fork the chain.
// - hash = SHA-256(prev_hash + "\n" + canonical JSON of the event). The first event chains from
//   GENESIS_HASH. Secrets are redacted before hashing and storing.
// - The database refuses UPDATE/DELETE/TRUNCATE (trigger in the init migration); verifyAuditChain
//   recomputes every hash, so even a superuser's edit with the trigger disabled is found. One who
//   also rehashes every later event is caught by the signed digests (audit-digest.ts).
import crypto from "node:crypto";
import type { Prisma } from "../../generated/prisma/client";
import { redactSecrets } from "../../security/redact";
import type { Actor } from "../actor";
import { canonicalJson, toJsonValue } from "./canonical-json";

export const GENESIS_HASH = "0".repeat(64);
export const AUDIT_CHAIN_LOCK = 7_363_002;

export interface AuditInput {
  actor: Actor;
  action: string;
  target: { type: string; id?: string | null };
  planId?: string | null;
  before?: unknown;
  after?: unknown;
  reason?: string | null;
}

interface ChainedFields {
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
  /** The client's x-request-id; hashed only when present, so events written before it verify as they were. */
  clientRequestId?: string | null;
  prevHash: string;
}

/** The text the chain hashes after the previous hash: every field but prevHash, canonical. */
function auditEventBody(fields: Omit<ChainedFields, "prevHash">): string {
  return canonicalJson({
    ...fields,
    at: fields.at.toISOString(),
    clientRequestId: fields.clientRequestId ?? undefined,
    prevHash: undefined,
  });
}

export function hashAuditEvent(fields: ChainedFields): string {
  const body = auditEventBody(fields);
  return crypto.createHash("sha256").update(`${fields.prevHash}\n${body}`).digest("hex");
}

function chainedFieldsOf(input: AuditInput): Omit<ChainedFields, "prevHash"> {
  return {
    at: new Date(),
    actorId: input.actor.id,
    actorEmail: input.actor.email,
    role: input.actor.role,
    action: input.action,
    targetType: input.target.type,
    targetId: input.target.id ?? null,
    planId: input.planId ?? null,
    before: toJsonValue(redactSecrets(input.before ?? null)),
    after: toJsonValue(redactSecrets(input.after ?? null)),
    reason: input.reason?.trim() || null,
    requestId: input.actor.requestId,
    clientRequestId: input.actor.clientRequestId ?? null,
  };
}

/**
 * An event to be chained by the database itself (the routing-change function of migration
 * 20261204200000): every field, before/after as JSON text, and the body the chain hashes — the
 * database adds prev_hash and hash = SHA-256(prev_hash + "\n" + body) under the chain's lock,
 * exactly as appendAuditEvent does, so verifyAuditChain checks it like any other event.
 */
export interface AuditEventDraft {
  at: string;
  actorId: string | null;
  actorEmail: string;
  role: string;
  action: string;
  targetType: string;
  targetId: string | null;
  planId: string | null;
  before: string | null;
  after: string | null;
  reason: string | null;
  requestId: string;
  clientRequestId: string | null;
  body: string;
}

export function draftAuditEvent(input: AuditInput): AuditEventDraft {
  const fields = chainedFieldsOf(input);
  return {
    ...fields,
    at: fields.at.toISOString(),
    before: fields.before === null ? null : JSON.stringify(fields.before),
    after: fields.after === null ? null : JSON.stringify(fields.after),
    clientRequestId: fields.clientRequestId ?? null,
    body: auditEventBody(fields),
  };
}

export async function appendAuditEvent(tx: Prisma.TransactionClient, input: AuditInput) {
  await tx.$executeRaw`select pg_advisory_xact_lock(${AUDIT_CHAIN_LOCK})`;
  const last = await tx.auditEvent.findFirst({ orderBy: { seq: "desc" }, select: { hash: true } });
  const fields: ChainedFields = { ...chainedFieldsOf(input), prevHash: last?.hash ?? GENESIS_HASH };
  return tx.auditEvent.create({
    data: {
      ...fields,
      before: fields.before === null ? undefined : (fields.before as Prisma.InputJsonValue),
      after: fields.after === null ? undefined : (fields.after as Prisma.InputJsonValue),
      hash: hashAuditEvent(fields),
    },
  });
}

export interface ChainVerification {
  ok: boolean;
  checked: number;
  /** The first event whose stored hash or link no longer matches, if any. */
  brokenAt: { seq: string; problem: string } | null;
  headHash: string;
}

type AuditReader = Pick<Prisma.TransactionClient, "auditEvent">;

/** Recomputes the whole chain in seq order, a page at a time. */
export async function verifyAuditChain(store: AuditReader, pageSize = 1000): Promise<ChainVerification> {
  let prevHash = GENESIS_HASH;
  let checked = 0;
  let cursor: bigint | undefined;
  for (;;) {
    const page = await store.auditEvent.findMany({
      where: cursor === undefined ? {} : { seq: { gt: cursor } },
      orderBy: { seq: "asc" },
      take: pageSize,
    });
    for (const event of page) {
      const seq = event.seq.toString();
      if (event.prevHash !== prevHash) {
        return {
          ok: false,
          checked,
          brokenAt: {
            seq,
            problem: "its link to the previous event does not match (an event was removed or reordered)",
          },
          headHash: prevHash,
        };
      }
      const expected = hashAuditEvent({
        at: event.at,
        actorId: event.actorId,
        actorEmail: event.actorEmail,
        role: event.role,
        action: event.action,
        targetType: event.targetType,
        targetId: event.targetId,
        planId: event.planId,
        before: event.before ?? null,
        after: event.after ?? null,
        reason: event.reason,
        requestId: event.requestId,
        clientRequestId: event.clientRequestId,
        prevHash: event.prevHash,
      });
      if (expected !== event.hash) {
        return {
          ok: false,
          checked,
          brokenAt: { seq, problem: "its content no longer matches its hash (the event was altered)" },
          headHash: prevHash,
        };
      }
      prevHash = event.hash;
      checked++;
    }
    if (page.length < pageSize) break;
    cursor = page.at(-1)?.seq;
  }
  return { ok: true, checked, brokenAt: null, headHash: prevHash };
}
