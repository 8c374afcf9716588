// The rule that keeps "resolved" honest: an open mismatch closes only where the run verified its
// tenant and did not confirm the row again.
import { describe, expect, it } from "vitest";
import type { RowDifference } from "./chunk-hash";
import { freshMismatches, mismatchesToClose, type OpenMismatchRef } from "./record-run";

const open = (id: number, tenant: string, key: string[], shard = 0): OpenMismatchRef => ({
  id: BigInt(id),
  tableName: '"public"."events"',
  tenantKey: tenant,
  shardOrdinal: shard,
  rowKey: key,
});
const difference = (tenant: string, key: string[], shard = 0): RowDifference => ({
  table: '"public"."events"',
  shard,
  tenant,
  key,
  kind: "changed",
  columns: [{ column: "payload", legacy: "a", shard: "b" }],
  legacyRow: null,
  shardRow: null,
});
const everything = () => true;

describe("mismatchesToClose", () => {
  it("keeps open a mismatch whose tenant the run could not verify (an inconclusive re-check proves nothing)", () => {
    const hot = open(1, "7", ["7", "1500"]);
    const closed = mismatchesToClose([hot], [], {
      covered: everything,
      unverified: [
        { table: '"public"."events"', tenant: "7", shard: 0, rows: 3_000, reason: "kept changing" },
      ],
    });
    expect(closed).toEqual([]);
  });

  it("closes a mismatch the run verified gone, and keeps one it confirmed again", () => {
    const fixed = open(1, "7", ["7", "1"]);
    const still = open(2, "7", ["7", "2"]);
    const closed = mismatchesToClose([fixed, still], [difference("7", ["7", "2"])], {
      covered: everything,
      unverified: [],
    });
    expect(closed.map((m) => m.id)).toEqual([1n]);
  });

  it("leaves alone what the run did not look at, and an unverified tenant on another shard does not shield this one", () => {
    const elsewhere = open(1, "8", ["8", "1"]);
    const otherShard = open(2, "9", ["9", "1"], 1);
    const closed = mismatchesToClose([elsewhere, otherShard], [], {
      covered: (_table, tenant) => tenant === "9",
      unverified: [
        { table: '"public"."events"', tenant: "9", shard: 0, rows: 0, reason: "stray rows kept changing" },
      ],
    });
    expect(closed.map((m) => m.id)).toEqual([2n]);
  });

  it("records only differences not already open", () => {
    const known = open(1, "7", ["7", "2"]);
    expect(
      freshMismatches([known], [difference("7", ["7", "2"]), difference("7", ["7", "3"])]).map((d) => d.key),
    ).toEqual([["7", "3"]]);
  });
});
