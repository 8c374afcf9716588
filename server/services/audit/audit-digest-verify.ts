// Checks the signed digests against the audit chain as it is now (see audit-digest.ts for why).
//
// 1. Every digest's signature (under the configured key) and its link to the previous digest:
//    an altered digest or one removed from the middle is found.
// 2. The chain is walked once in seq order; at each digest's last seq, the event's stored hash and
//    the number of events so far must equal what was signed. A history rewritten and rehashed after
//    a digest was signed no longer matches it: the first digest that fails says from where on the
//    history diverges (between the previous digest's head and this one's).
import { db } from "../../db";
import type { AuditDigest } from "../../generated/prisma/client";
import {
  type AuditKey,
  configuredAuditKey,
  digestSignatureValid,
  NO_AUDIT_KEY_MESSAGE,
} from "./audit-digest";
import { GENESIS_HASH } from "./audit-log";

export interface DigestVerification {
  /** verified: every checkable digest matches; diverged: one does not; no-key / none: nothing to check. */
  status: "verified" | "diverged" | "no-key" | "none";
  message: string;
  /** Digests whose signature and head were checked. */
  checked: number;
  /** Digests signed under another key (rotated): linked, but their signatures cannot be checked. */
  otherKey: number;
  latest: { id: string; at: Date; lastSeq: string } | null;
  /** Events appended after the newest digest: not anchored yet. */
  unanchored: number;
  divergedAt: {
    digestId: string;
    at: Date;
    lastSeq: string;
    /** The rewrite lies in events fromSeq…lastSeq (or removed events there). */
    fromSeq: string;
    problem: string;
  } | null;
}

function label(d: AuditDigest): string {
  return `digest #${d.id} (signed ${d.at.toISOString()}, covering events up to #${d.lastSeq})`;
}

export async function verifyAuditDigests(
  key: AuditKey | null = configuredAuditKey(),
  pageSize = 5000,
): Promise<DigestVerification> {
  const digests = await db().auditDigest.findMany({ orderBy: { id: "asc" } });
  const events = await db().auditEvent.count();
  const newest = digests.at(-1);
  const latest = newest
    ? { id: newest.id.toString(), at: newest.at, lastSeq: newest.lastSeq.toString() }
    : null;
  const base = { checked: 0, otherKey: 0, latest, divergedAt: null };
  if (!key) {
    return { ...base, status: "no-key", message: NO_AUDIT_KEY_MESSAGE, unanchored: events };
  }
  if (!newest) {
    return {
      ...base,
      status: "none",
      message: "No digest has been signed yet: the worker signs one every few minutes once events exist.",
      unanchored: events,
    };
  }

  const diverged = (digest: AuditDigest, previous: AuditDigest | undefined, problem: string) => {
    const fromSeq = (previous ? previous.lastSeq + 1n : 1n).toString();
    const since = previous ? ` ${label(previous)} still matches, so` : " So";
    return {
      ...base,
      status: "diverged" as const,
      checked: digests.indexOf(digest),
      unanchored: events,
      message: `The history diverges from ${label(digest)}: ${problem}.${since} events #${fromSeq}–#${digest.lastSeq} were rewritten, removed or reordered after it was signed. Restore the audit table from a backup taken before then.`,
      divergedAt: {
        digestId: digest.id.toString(),
        at: digest.at,
        lastSeq: digest.lastSeq.toString(),
        fromSeq,
        problem,
      },
    };
  };

  // 1. Signatures and links, oldest first. The first bad digest is reported only if the walk
  //    below finds no earlier one: the answer is always the earliest digest that fails.
  //    A digest under another key cannot be checked, so anyone can write one: it is accepted only
  //    as a rotated-away key's, i.e. before the first digest under the current key (keys rotate
  //    forward). After it, another key id is how a rewrite relabels the digests it cannot sign.
  let otherKey = 0;
  let newestChecked: AuditDigest | undefined;
  let bad: { index: number; result: ReturnType<typeof diverged> } | null = null;
  for (const [i, digest] of digests.entries()) {
    const previous = digests[i - 1];
    let problem: string | null = null;
    if (digest.prevSignature !== (previous?.signature ?? GENESIS_HASH)) {
      problem = "its link to the previous digest does not match (a digest was removed)";
    } else if (previous && digest.lastSeq < previous.lastSeq) {
      problem = "it covers fewer events than the digest before it";
    } else if (digest.keyId !== key.id && newestChecked) {
      problem = `it names another key after ${label(newestChecked)} was signed with the current one (keys only rotate forward: it was not signed by Shardshift)`;
    } else if (digest.keyId !== key.id) {
      otherKey++;
    } else if (!digestSignatureValid(key, digest)) {
      problem = "its signature does not match (the digest itself was altered)";
    } else {
      newestChecked = digest;
    }
    if (problem) {
      bad = { index: i, result: diverged(digest, previous, problem) };
      break;
    }
  }

  // 2. One walk over the chain, comparing each digest's head with the events as they are now.
  let next = 0;
  let count = 0n;
  let cursor = 0n;
  /** Settles every digest whose head is at or before `limit` (null: the end of the chain). */
  const settleUpTo = (
    limit: bigint | null,
    event: { seq: bigint; hash: string } | null,
  ): ReturnType<typeof diverged> | null => {
    for (; next < digests.length; next++) {
      if (bad && next === bad.index) return bad.result;
      const digest = digests[next] as AuditDigest;
      if (limit !== null && digest.lastSeq > limit) return null;
      const previous = digests[next - 1];
      if (digest.lastSeq === 0n) {
        if (count !== 0n || digest.eventCount !== 0n) {
          return diverged(digest, previous, "events now exist before the empty chain it signed");
        }
        continue;
      }
      if (event?.seq !== digest.lastSeq) {
        return diverged(digest, previous, `the event #${digest.lastSeq} it signed is gone`);
      }
      if (event.hash !== digest.lastHash) {
        return diverged(digest, previous, `the event #${digest.lastSeq} it signed now has a different hash`);
      }
      if (count !== digest.eventCount) {
        return diverged(
          digest,
          previous,
          `it counted ${digest.eventCount} events up to #${digest.lastSeq}, there are now ${count}`,
        );
      }
    }
    return null;
  };
  for (;;) {
    const page = await db().auditEvent.findMany({
      where: { seq: { gt: cursor } },
      orderBy: { seq: "asc" },
      take: pageSize,
      select: { seq: true, hash: true },
    });
    for (const event of page) {
      // A digest whose head lies before this event, and was not settled at its own event, lost it.
      const lost = settleUpTo(event.seq - 1n, null);
      if (lost) return lost;
      count++;
      const here = settleUpTo(event.seq, event);
      if (here) return here;
    }
    if (page.length < pageSize) break;
    cursor = page.at(-1)?.seq ?? cursor;
  }
  const tail = settleUpTo(null, null);
  if (tail) return tail;

  const checked = digests.length - otherKey;
  if (!newestChecked) {
    // Only digests nobody here can check: they would match any history someone chose to label them with.
    return {
      ...base,
      status: "none",
      otherKey,
      unanchored: events,
      message: `No digest is signed with the current key: the ${otherKey} digest(s) stored name another key and cannot be checked, so nothing vouches for this history. The worker signs one under the current key within minutes; if the key was not rotated, the digests were rewritten.`,
    };
  }
  // Anchored only as far as a digest that was checked: a later one under another key proves nothing.
  const unanchored = events - Number(newestChecked.eventCount);
  return {
    ...base,
    latest: {
      id: newestChecked.id.toString(),
      at: newestChecked.at,
      lastSeq: newestChecked.lastSeq.toString(),
    },
    status: "verified",
    checked,
    otherKey,
    unanchored,
    message:
      `${checked.toLocaleString("en")} signed digest${checked === 1 ? "" : "s"} match the chain; the newest, ${label(newestChecked)}, ` +
      (unanchored > 0
        ? `leaves ${unanchored} later event${unanchored === 1 ? "" : "s"} to the next digest.`
        : "anchors every event.") +
      (otherKey ? ` ${otherKey} older digest(s) were signed with another key and could not be checked.` : ""),
  };
}
