// Runs last (files run in name order, one worker): it breaks the chain on purpose.
import { expect, test } from "@playwright/test";
import { controlPlanePool, signIn } from "./helpers";

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
