// Refused requests (401/403 from role checks, foreign origins) and failed sign-ins, in the audit
// log as their own kinds. Someone hammering the API must not be able to flood the chain, so each
// (kind, who) gets at most one event a minute; the refusals in between are counted
// (throttle_window) and the next event of that kind and actor says how many there were.

import { countInWindow } from "../../auth/throttle";
import { db } from "../../db";
import type { Actor } from "../actor";
import { appendAuditEvent } from "./audit-log";

export const REFUSAL_WINDOW_SECONDS = 60;

export type RefusalKind = "access.refused" | "auth.sign_in.failed";

export interface Refusal {
  kind: RefusalKind;
  /** The signed-in user, if any; otherwise the refusal is keyed on the client's address. */
  user: { id: string; email: string; role: string } | null;
  /** For anonymous callers: what they claimed to be (the email typed at sign-in), never trusted. */
  claimedEmail?: string | null;
  address: string | null;
  target: { type: string; id: string };
  status: number;
  reason: string;
  requestId: string;
}

/** Returns true when this refusal was written to the audit log, false when it was only counted. */
export async function recordRefusal(refusal: Refusal): Promise<boolean> {
  // Keyed on the address, not the email typed: varying emails must not buy more events.
  const who = refusal.user ? `user:${refusal.user.id}` : `addr:${refusal.address ?? "unknown"}`;
  return db().$transaction(async (tx) => {
    const window = await countInWindow(tx, `refusal:${refusal.kind}:${who}`, REFUSAL_WINDOW_SECONDS);
    if (window.count > 1) return false;
    const actor = {
      id: refusal.user?.id ?? null,
      email: refusal.user?.email ?? refusal.claimedEmail?.toLowerCase() ?? "anonymous",
      // Not a role anyone holds: says the caller was not signed in (or not as a known user).
      role: (refusal.user?.role ?? "anonymous") as Actor["role"],
      requestId: refusal.requestId,
    };
    await appendAuditEvent(tx, {
      actor,
      action: refusal.kind,
      target: refusal.target,
      after: {
        status: refusal.status,
        reason: refusal.reason,
        address: refusal.address ?? "unknown",
        // Refusals of this kind by this caller that were counted but not written, in the window
        // before this one (at most one event a minute is written per caller and kind).
        unrecordedBefore: window.previousCount === null ? 0 : Math.max(0, window.previousCount - 1),
      },
    });
    return true;
  });
}

/** Recording must never change the answer a refused caller gets: log and go on. */
export async function recordRefusalQuietly(refusal: Refusal): Promise<void> {
  try {
    await recordRefusal(refusal);
  } catch (error) {
    console.error("[audit] could not record a refusal", error);
  }
}
