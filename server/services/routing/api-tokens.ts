// API tokens: how an application's router proves it may read one plan's routing map over HTTP.
//
// - Created by an admin (dashboard or tRPC), shown once: "sst_" + 32 random bytes (base64url).
//   Only SHA-256(token) is stored: the token carries 256 bits of randomness, so a fast hash is
//   enough (no password stretching needed) and a lookup by hash is the comparison.
// - Scoped to one plan and to reading its routing map; revocable (effective on the next request).
// - Creation and revocation are audited (name, plan, prefix — never the token).
import crypto from "node:crypto";
import { db } from "../../db";
import { AppError } from "../../errors";
import type { Actor } from "../actor";
import { appendAuditEvent } from "../audit/audit-log";

const TOKEN_PREFIX = "sst_";
const LAST_USED_RESOLUTION_MS = 60_000;

export function hashApiToken(token: string): string {
  return crypto.createHash("sha256").update(token, "utf8").digest("hex");
}

export interface ApiTokenView {
  id: string;
  planId: string;
  name: string;
  prefix: string;
  scope: string;
  createdByEmail: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
  revokedByEmail: string | null;
}

function view(row: {
  id: string;
  planId: string;
  name: string;
  tokenPrefix: string;
  scope: string;
  createdByEmail: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
  revokedByEmail: string | null;
}): ApiTokenView {
  return {
    id: row.id,
    planId: row.planId,
    name: row.name,
    prefix: row.tokenPrefix,
    scope: row.scope,
    createdByEmail: row.createdByEmail,
    createdAt: row.createdAt,
    lastUsedAt: row.lastUsedAt,
    revokedAt: row.revokedAt,
    revokedByEmail: row.revokedByEmail,
  };
}

/** Creates a token; the returned `token` is the only time anyone sees it. */
export async function createApiToken(
  actor: Actor,
  input: { planId: string; name: string; reason?: string },
): Promise<{ token: string; apiToken: ApiTokenView }> {
  const token = `${TOKEN_PREFIX}${crypto.randomBytes(32).toString("base64url")}`;
  const prefix = token.slice(0, TOKEN_PREFIX.length + 6);
  const row = await db().$transaction(async (tx) => {
    const plan = await tx.plan.findUnique({
      where: { id: input.planId },
      select: { id: true, status: true },
    });
    if (!plan)
      throw new AppError(
        "NOT_FOUND",
        "This plan does not exist (it may have been deleted). Go back to the plans list.",
      );
    if (plan.status === "archived") {
      throw new AppError(
        "PRECONDITION_FAILED",
        "This plan is archived: its routing map is no longer served. Nothing was created.",
      );
    }
    const created = await tx.apiToken.create({
      data: {
        planId: input.planId,
        name: input.name,
        tokenHash: hashApiToken(token),
        tokenPrefix: prefix,
        createdById: actor.id,
        createdByEmail: actor.email,
      },
    });
    await appendAuditEvent(tx, {
      actor,
      action: "api_token.create",
      target: { type: "api_token", id: created.id },
      planId: input.planId,
      after: { name: created.name, prefix, scope: created.scope },
      reason: input.reason ?? null,
    });
    return created;
  });
  return { token, apiToken: view(row) };
}

export async function listApiTokens(planId: string): Promise<ApiTokenView[]> {
  const rows = await db().apiToken.findMany({ where: { planId }, orderBy: { createdAt: "desc" } });
  return rows.map(view);
}

export async function revokeApiToken(
  actor: Actor,
  input: { tokenId: string; reason: string },
): Promise<ApiTokenView> {
  return db().$transaction(async (tx) => {
    const current = await tx.apiToken.findUnique({ where: { id: input.tokenId } });
    if (!current)
      throw new AppError(
        "NOT_FOUND",
        "This token does not exist (it may have been removed). Reload the list.",
      );
    if (current.revokedAt) {
      throw new AppError(
        "CONFLICT",
        `This token was already revoked by ${current.revokedByEmail ?? "someone"}. Nothing was changed.`,
      );
    }
    // Conditional: of two concurrent revocations exactly one changes the row (and is audited).
    const updated = await tx.apiToken.updateMany({
      where: { id: input.tokenId, revokedAt: null },
      data: { revokedAt: new Date(), revokedByEmail: actor.email },
    });
    if (updated.count === 0)
      throw new AppError("CONFLICT", "This token was revoked meanwhile. Nothing was changed.");
    await appendAuditEvent(tx, {
      actor,
      action: "api_token.revoke",
      target: { type: "api_token", id: current.id },
      planId: current.planId,
      before: { name: current.name, prefix: current.tokenPrefix, revoked: false },
      after: { revoked: true },
      reason: input.reason,
    });
    return view(await tx.apiToken.findUniqueOrThrow({ where: { id: input.tokenId } }));
  });
}

export type TokenCheck = { ok: true; tokenId: string; planId: string } | { ok: false; reason: string };

/** The plan a bearer token may read, or why not. Never says whether a wrong token exists. */
export async function authenticateApiToken(authorization: string | null): Promise<TokenCheck> {
  const match = /^Bearer\s+(\S{1,200})$/i.exec(authorization?.trim() ?? "");
  if (!match?.[1]) {
    return {
      ok: false,
      reason:
        "Send the plan's API token as \"Authorization: Bearer sst_…\" (an admin creates one on the plan's Routing page).",
    };
  }
  const row = await db().apiToken.findUnique({
    where: { tokenHash: hashApiToken(match[1]) },
    select: { id: true, planId: true, revokedAt: true, lastUsedAt: true, scope: true },
  });
  if (!row || row.revokedAt || row.scope !== "routing:read") {
    return {
      ok: false,
      reason:
        "This API token is not valid (unknown or revoked). Ask an admin for a new one on the plan's Routing page.",
    };
  }
  if (!row.lastUsedAt || Date.now() - row.lastUsedAt.getTime() > LAST_USED_RESOLUTION_MS) {
    await db()
      .apiToken.update({ where: { id: row.id }, data: { lastUsedAt: new Date() } })
      .catch(() => {});
  }
  return { ok: true, tokenId: row.id, planId: row.planId };
}
