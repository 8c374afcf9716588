// Audit anchoring (issue 10, finding 12) on a real server: a database superuser who rewrites an
// event AND rehashes every later one passes the hash-chain check, but not the signed digests;
// verification names the first digest the rewritten history no longer matches. The worker's
// schedule and on-request digests run through the real pg-boss queue.
import crypto from "node:crypto";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { db } from "../../db";
import { startAuditDigests } from "../../jobs/audit-digest-job";
import { startQueue } from "../../jobs/queue";
import { useControlPlane } from "../../testing/control-plane";
import { systemActor } from "../actor";
import { auditKeyFrom, signAuditDigest } from "./audit-digest";
import { verifyAuditDigests } from "./audit-digest-verify";
import { appendAuditEvent, hashAuditEvent, verifyAuditChain } from "./audit-log";
import { verifyChain } from "./audit-query";

let control: Awaited<ReturnType<typeof useControlPlane>>;
const keyText = crypto.randomBytes(32).toString("base64");

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

/** What a superuser can do: bypass the trigger, edit one event and rehash every later one. */
async function rewriteAndRehash(client: pg.ClientBase, seq: bigint, reason: string) {
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
        reason: event.seq === seq ? reason : event.reason,
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
  } finally {
    await client.query("set session_replication_role = origin");
  }
}

beforeAll(async () => {
  process.env.SHARDSHIFT_AUDIT_KEY = keyText;
  control = await useControlPlane("audit_digest");
});

afterAll(async () => {
  await control?.drop();
});

describe("audit digests", () => {
  const digests: { id: bigint; lastSeq: bigint }[] = [];

  it("signs the head, and a scheduled digest only when events were appended", async () => {
    for (const label of ["a", "b", "c"]) {
      await appendEvents(4, label);
      const digest = await signAuditDigest("schedule");
      expect(digest).not.toBeNull();
      if (digest) digests.push(digest);
    }
    expect(await signAuditDigest("schedule")).toBeNull();
    await appendEvents(2, "d"); // not anchored yet
    const head = await db().auditEvent.findFirstOrThrow({ where: { seq: digests[2]?.lastSeq } });
    const stored = await db().auditDigest.findFirstOrThrow({ where: { id: digests[2]?.id } });
    expect(stored).toMatchObject({ lastHash: head.hash, eventCount: 12n, algorithm: "HMAC-SHA256" });
    expect(stored.signature).toMatch(/^[0-9a-f]{64}$/);
  });

  it("verifies an untouched chain against every digest", async () => {
    const result = await verifyChain();
    expect(result.ok).toBe(true);
    expect(result.digests).toMatchObject({ status: "verified", checked: 3, unanchored: 2, divergedAt: null });
  });

  it("says so when no key is configured", async () => {
    expect((await verifyAuditDigests(null)).status).toBe("no-key");
    const wrong = auditKeyFrom(crypto.randomBytes(32).toString("base64"));
    const other = await verifyAuditDigests(wrong);
    // Digests nobody here can check vouch for nothing (audit-digest-forged-key.test.ts).
    expect(other).toMatchObject({ status: "none", otherKey: 3, checked: 0 });
  });

  it("catches a superuser's rewrite-and-rehash, naming the digest from which the history diverges", async () => {
    const first = digests[0];
    const second = digests[1];
    if (!first || !second) throw new Error("digests missing");
    const client = await control.pool.connect();
    try {
      // An event between the first and the second digest.
      await rewriteAndRehash(client, first.lastSeq + 2n, "nothing happened here");
    } finally {
      client.release();
    }
    // The hash chain alone is fooled: every hash and link is consistent again.
    expect((await verifyAuditChain(db())).ok).toBe(true);
    const result = await verifyChain();
    expect(result.ok).toBe(false);
    expect(result.digests.status).toBe("diverged");
    expect(result.digests.divergedAt).toMatchObject({
      digestId: second.id.toString(),
      lastSeq: second.lastSeq.toString(),
      fromSeq: (first.lastSeq + 1n).toString(),
    });
    expect(result.digests.message).toMatch(
      new RegExp(
        `The history diverges from digest #${second.id} \\(signed .*, covering events up to #${second.lastSeq}\\): the event #${second.lastSeq} it signed now has a different hash\\. digest #${first.id} .* still matches, so events #${first.lastSeq + 1n}–#${second.lastSeq} were rewritten`,
      ),
    );
  });

  it("catches a digest re-pointed at the rewritten history (its signature no longer matches)", async () => {
    const second = digests[1];
    if (!second) throw new Error("digest missing");
    const event = await db().auditEvent.findFirstOrThrow({ where: { seq: second.lastSeq } });
    await control.pool.query(`
      set session_replication_role = replica;
      update audit_digest set last_hash = '${event.hash}' where id = ${second.id};
      set session_replication_role = origin;`);
    const result = await verifyChain();
    expect(result.digests.divergedAt?.digestId).toBe(second.id.toString());
    expect(result.digests.divergedAt?.problem).toMatch(/its signature does not match/);
  });

  it("refuses to change or delete a digest without a superuser's bypass", async () => {
    await expect(control.pool.query("delete from audit_digest")).rejects.toThrow(/append-only/);
    await expect(control.pool.query("update audit_digest set reason = 'x'")).rejects.toThrow(/append-only/);
  });

  it("is signed by the worker on its schedule's queue, and on request", async () => {
    const boss = await startQueue(control.url);
    try {
      expect(await startAuditDigests(boss, () => {})).toBe(true);
      const schedules = await boss.getSchedules();
      expect(schedules.map((s) => [s.name, s.cron])).toEqual([["audit.digest", "*/5 * * * *"]]);
      const before = await db().auditDigest.count();
      await boss.send("audit.digest", { reason: "request" });
      const deadline = Date.now() + 30_000;
      while ((await db().auditDigest.count({ where: { reason: "request" } })) === 0) {
        if (Date.now() > deadline) throw new Error("no digest signed by the worker within 30 s");
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(await db().auditDigest.count()).toBe(before + 1);
    } finally {
      await boss.stop({ graceful: false, wait: true });
    }
  });
});
