// A position is confirmed only once every target that wrote for it holds it by its replication
// origin, flushed; a target that had nothing to do does not hold the slot back; a stamp the target
// never committed is never confirmed. Against real servers, committing asynchronously as CDC does.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../testing/databases";
import { waitFor } from "../../testing/worker-process";
import type { TableInfo } from "../analysis/introspect";
import { tableApplier } from "./apply";
import { applyOriginName, dropSlotOriginsSql } from "./apply-origin";
import { DurableConfirmer } from "./durable-confirm";
import { readOriginProgress, TargetApplier } from "./target-applier";

let busy: TestDatabase;
let quiet: TestDatabase;
const targets: TargetApplier[] = [];
const slot = `confirm_${process.pid}`;

const table: TableInfo = {
  schema: "public",
  name: "t",
  qualified: '"public"."t"',
  kind: "reference",
  columns: [
    {
      name: "id",
      type: "integer",
      typeOid: 23,
      notNull: true,
      defaultExpr: null,
      identity: null,
      generatedExpr: null,
    },
  ],
  primaryKey: ["id"],
  replicaIdentity: "default",
  indexes: [],
  foreignKeys: [],
  sequences: [],
  estimatedRows: 0,
};

beforeAll(async () => {
  busy = await createTestDatabase("confirm_busy");
  quiet = await createTestDatabase("confirm_quiet");
  for (const [ordinal, db] of [busy, quiet].entries()) {
    await db.pool.query("create table t (id int primary key)");
    targets.push(
      await TargetApplier.open({ url: db.url, ordinal, origin: applyOriginName(slot, 1n, ordinal) }),
    );
  }
});

afterAll(async () => {
  for (const t of targets) await t.close();
  const drop = dropSlotOriginsSql(slot);
  await busy?.pool.query(drop.text, drop.values);
  await busy?.drop();
  await quiet?.drop();
});

describe("DurableConfirmer", () => {
  it("confirms by the targets' flushed origins; a quiet target does not hold the slot back", {
    timeout: 30_000,
  }, async () => {
    const [t0] = targets;
    if (!t0) throw new Error("no target");
    const pools = [busy.pool, quiet.pool];
    const confirmedAt: bigint[] = [];
    const confirmer = new DurableConfirmer(
      (ordinal) => readOriginProgress(pools[ordinal] ?? busy.pool, targets[ordinal]?.origin ?? ""),
      (lsn) => confirmedAt.push(lsn),
    );
    const upsert = tableApplier(table).upsert;
    for (let i = 1; i <= 20; i++) {
      const stamp = BigInt(i * 100);
      expect(
        await t0.apply([upsert({ id: String(i) })], { lsn: stamp, commitTimeIso: new Date().toISOString() }),
      ).toBe(true);
      // Target 1 got nothing from these batches.
      confirmer.applied(stamp + 10n, new Map([[0, stamp]]));
    }
    confirmer.applied(2_050n); // a batch that wrote nowhere still confirms, in order
    await waitFor("batches 1–21 to be confirmed", async () => {
      await confirmer.check();
      return confirmedAt.at(-1) === 2_050n;
    });
    expect(await readOriginProgress(busy.pool, t0.origin)).toBe(2_000n);
    expect(await readOriginProgress(quiet.pool, targets[1]?.origin ?? "")).toBe(0n);

    // A stamp the target never committed (its transaction was lost) is never confirmed, nor anything after it.
    confirmer.applied(3_010n, new Map([[0, 3_000n]]));
    confirmer.applied(3_020n);
    for (let i = 0; i < 3; i++) await confirmer.check();
    expect(confirmedAt.at(-1)).toBe(2_050n);
    expect(confirmer.waiting).toBe(2);
  });
});
