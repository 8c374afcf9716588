// Audit targets by name: plans and databases named (the id kept for hover), a removed target by the
// name its event recorded.
import { afterAll, beforeAll, expect, it } from "vitest";
import { useControlPlane } from "../../testing/control-plane";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { planAtTwoWayCdc } from "../../testing/plan-fixture";
import type { Actor } from "../actor";
import { registerDatabase, removeDatabase } from "../databases/databases";
import { listNamedAuditEvents } from "./audit-targets";

const admin: Actor = { id: null, email: "admin@test", role: "admin", requestId: "audit-targets" };
let control: Awaited<ReturnType<typeof useControlPlane>>;
let legacy: TestDatabase;
let shard: TestDatabase;
let spareDb: TestDatabase;

beforeAll(async () => {
  control = await useControlPlane("audit_targets");
  legacy = await createTestDatabase("audit_targets_legacy");
  shard = await createTestDatabase("audit_targets_shard");
  // A database of its own: one database may be registered only once (server-identity.ts).
  spareDb = await createTestDatabase("audit_targets_spare");
  await legacy.pool.query(
    "create table orders (tenant_id bigint not null, id bigint, primary key (tenant_id, id))",
  );
});

afterAll(async () => {
  await control?.drop();
  await legacy?.drop();
  await shard?.drop();
  await spareDb?.drop();
});

it("names plans and databases, and a removed database by the name its event recorded", async () => {
  const plan = await planAtTwoWayCdc(admin, "EU split", legacy.url, [shard.url]);
  const spare = await registerDatabase(admin, { name: "spare-shard", kind: "shard", url: spareDb.url });
  await removeDatabase(admin, { databaseId: spare.id, reason: "not needed" });

  const { events } = await listNamedAuditEvents({ filter: {}, limit: 50 });
  const advance = events.find((e) => e.action === "plan.advance");
  expect(advance).toMatchObject({ targetType: "plan", targetId: plan.id, targetName: "EU split" });
  const legacyRegistered = events.find((e) => e.action === "database.register" && e.targetName === "legacy");
  expect(legacyRegistered?.targetId).toMatch(/^[0-9a-f-]{36}$/);
  const removed = events.filter((e) => e.targetId === spare.id);
  expect(removed.length).toBeGreaterThanOrEqual(2);
  expect(removed.every((e) => e.targetName === "spare-shard")).toBe(true);
});

it("pages the log oldest first as well as newest first (the audit table's sort asks the server)", async () => {
  const newest = await listNamedAuditEvents({ filter: {}, limit: 3 });
  const seqs = (page: { events: { seq: string }[] }) => page.events.map((e) => Number(e.seq));
  expect(seqs(newest)).toEqual([...seqs(newest)].sort((a, b) => b - a));
  const oldest = await listNamedAuditEvents({ filter: {}, limit: 3, order: "oldest" });
  expect(seqs(oldest)).toEqual([1, 2, 3]);
  const next = await listNamedAuditEvents({
    filter: {},
    limit: 3,
    order: "oldest",
    cursor: oldest.nextCursor ?? undefined,
  });
  expect(seqs(next)).toEqual([4, 5, 6]);
  expect(next.total).toBe(newest.total);
});
