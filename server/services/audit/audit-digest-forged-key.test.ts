// A superuser who rewrites the chain AND the digests signed after the rewrite cannot sign them with
// the key (it is not in the database), but can label them with another key id: digests under
// another key are not checkable, and verification used to accept them as a rotated key's and say
// "verified … anchors every event". Keys rotate forward only, so another key's digest after one
// signed with the current key is forged; and with no digest under the current key nothing vouches
// for the history at all.
import crypto from "node:crypto";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { useControlPlane } from "../../testing/control-plane";
import { systemActor } from "../actor";
import { signAuditDigest } from "./audit-digest";
import { appendAuditEvent, hashAuditEvent } from "./audit-log";
import { verifyChain } from "./audit-query";

let control: Awaited<ReturnType<typeof useControlPlane>>;

async function appendEvents(n: number, label: string) {
  for (let i = 0; i < n; i++) {
    await db().$transaction((tx) =>
      appendAuditEvent(tx, {
        actor: systemActor(`${label}-${i}`),
        action: "test.event",
        target: { type: "test", id: `${label}-${i}` },
        after: { i },
        reason: `${label} ${i}`,
      }),
    );
  }
}

/** Edits one event, rehashes every later one, and re-points (and relabels) every digest from `fromDigestId` on. */
async function rewriteChainAndDigests(client: pg.ClientBase, seq: bigint, fromDigestId: bigint) {
  await client.query("set session_replication_role = replica");
  try {
    const events = await db().auditEvent.findMany({ where: { seq: { gte: seq } }, orderBy: { seq: "asc" } });
    const before = await db().auditEvent.findFirst({ where: { seq: { lt: seq } }, orderBy: { seq: "desc" } });
    let prevHash = before?.hash ?? "0".repeat(64);
    for (const event of events) {
      const { seq: _seq, hash: _hash, ...stored } = event;
      const fields = {
        ...stored,
        before: event.before ?? null,
        after: event.after ?? null,
        reason: event.seq === seq ? "nothing happened here" : event.reason,
        prevHash,
      };
      const hash = hashAuditEvent(fields);
      await client.query("update audit_event set reason = $1, prev_hash = $2, hash = $3 where seq = $4", [
        fields.reason,
        prevHash,
        hash,
        event.seq.toString(),
      ]);
      prevHash = hash;
    }
    const digests = await db().auditDigest.findMany({ orderBy: { id: "asc" } });
    let prevSignature = "0".repeat(64);
    for (const digest of digests) {
      if (digest.id >= fromDigestId) {
        const head = await db().auditEvent.findFirstOrThrow({ where: { seq: digest.lastSeq } });
        const signature = crypto.randomBytes(32).toString("hex");
        await client.query(
          "update audit_digest set key_id = 'feedfacefeedface', last_hash = $1, prev_signature = $2, signature = $3 where id = $4",
          [head.hash, prevSignature, signature, digest.id.toString()],
        );
        prevSignature = signature;
      } else {
        prevSignature = digest.signature;
      }
    }
  } finally {
    await client.query("set session_replication_role = origin");
  }
}

beforeAll(async () => {
  process.env.SHARDSHIFT_AUDIT_KEY = crypto.randomBytes(32).toString("base64");
  control = await useControlPlane("audit_digest_forged");
});

afterAll(async () => {
  await control?.drop();
});

describe("digests relabelled with another key", () => {
  const digests: { id: bigint; lastSeq: bigint }[] = [];

  it("are forged when they follow a digest signed with the current key", async () => {
    for (const label of ["a", "b", "c"]) {
      await appendEvents(3, label);
      const digest = await signAuditDigest("schedule");
      if (digest) digests.push(digest);
    }
    const [first, second] = digests;
    if (!first || !second) throw new Error("digests missing");
    const client = await control.pool.connect();
    try {
      await rewriteChainAndDigests(client, first.lastSeq + 2n, second.id);
    } finally {
      client.release();
    }
    const result = await verifyChain();
    expect(result.digests.status).toBe("diverged");
    expect(result.ok).toBe(false);
    expect(result.digests.divergedAt?.digestId).toBe(second.id.toString());
    expect(result.digests.divergedAt?.problem).toMatch(/another key after/);
  });

  it("vouch for nothing when no digest is under the current key", async () => {
    const [first] = digests;
    if (!first) throw new Error("digests missing");
    const client = await control.pool.connect();
    try {
      await rewriteChainAndDigests(client, 1n, first.id);
    } finally {
      client.release();
    }
    const result = await verifyChain();
    expect(result.digests.status).not.toBe("verified");
    expect(result.digests).toMatchObject({ checked: 0, otherKey: 3 });
    expect(result.digests.message).toMatch(/current key/);
  });
});
