// Runs last (files run in name order, one worker): it breaks the chain on purpose.
import { expect, test } from "@playwright/test";
import { hashAuditEvent } from "../server/services/audit/audit-log";
import { controlPlanePool, screenshot, signIn } from "./helpers";

test("a superuser who rewrites an event and rehashes the rest is caught by the signed digests", async ({
  page,
}) => {
  // A digest of the head as it is now, signed by the demo's worker on request.
  await signIn(page, "operator");
  await page.getByRole("link", { name: "Audit log" }).click();
  const digests = page.locator("section", { hasText: "Signed digests" });
  await page.getByRole("button", { name: "Sign a digest now" }).click();
  await expect(digests.getByRole("cell", { name: "request", exact: true }).first()).toBeVisible();

  const pool = controlPlanePool();
  let rewritten = "";
  try {
    const client = await pool.connect();
    try {
      // The chain's lock keeps appenders out while every later event is rehashed.
      await client.query("begin");
      await client.query("select pg_advisory_xact_lock(7363002)");
      await client.query("set local session_replication_role = replica");
      const { rows } = await client.query(
        `select seq::text, at, actor_id, actor_email, role, action, target_type, target_id, plan_id, before,
                after, reason, request_id, client_request_id, prev_hash
           from audit_event
          where seq >= (select min(seq) from audit_event where action = 'plan.create')
          order by audit_event.seq -- the bigint, not the text in the select list
        `,
      );
      rewritten = rows[0]?.seq;
      let prevHash: string = rows[0]?.prev_hash;
      for (const [i, row] of rows.entries()) {
        const reason = i === 0 ? "nothing happened" : row.reason;
        const hash = hashAuditEvent({
          at: row.at,
          actorId: row.actor_id,
          actorEmail: row.actor_email,
          role: row.role,
          action: row.action,
          targetType: row.target_type,
          targetId: row.target_id,
          planId: row.plan_id,
          before: row.before,
          after: row.after,
          reason,
          requestId: row.request_id,
          clientRequestId: row.client_request_id,
          prevHash,
        });
        await client.query("update audit_event set reason = $1, prev_hash = $2, hash = $3 where seq = $4", [
          reason,
          prevHash,
          hash,
          row.seq,
        ]);
        prevHash = hash;
      }
      await client.query("commit");
    } finally {
      client.release();
    }
  } finally {
    await pool.end();
  }
  expect(rewritten).not.toBe("");

  await signIn(page, "viewer");
  await page.getByRole("link", { name: "Audit log" }).click();
  await page.getByRole("button", { name: "Verify chain" }).click();
  // The hash chain alone is fooled; the digests are not, and say from where on.
  await expect(page.getByText(/Chain verified: all \d+ events match their hashes/)).toBeVisible();
  await expect(
    page.getByText(/History rewritten: it no longer matches signed digest #\d+ \(events #\d+–#\d+\)/),
  ).toBeVisible();
  await screenshot(page, "16-audit-digest-diverged");
});

test("a superuser's edit to an audit event is caught by verification", async ({ page }) => {
  const pool = controlPlanePool();
  try {
    const client = await pool.connect();
    try {
      await expect(client.query("update audit_event set reason = 'edited'")).rejects.toThrow(/append-only/);
      const { rows } = await client.query<{ seq: string }>(
        "select seq::text from audit_event where action = 'plan.advance' limit 1",
      );
      const seq = rows[0]?.seq;
      expect(seq).toBeDefined();
      await client.query("set session_replication_role = replica");
      await client.query("update audit_event set reason = 'nothing happened' where seq = $1", [seq]);
      await client.query("set session_replication_role = origin");
      await signIn(page, "viewer");
      await page.getByRole("link", { name: "Audit log" }).click();
      await page.getByRole("button", { name: "Verify chain" }).click();
      await expect(page.getByText(`Chain broken at event #${seq}`)).toBeVisible();
      await expect(page.getByText(/altered/)).toBeVisible();
    } finally {
      client.release();
    }
  } finally {
    await pool.end();
  }
});
