import { describe, expect, it } from "vitest";
import {
  CUTOVER_STATUS,
  cutoverButtonLabel,
  dryRunSentence,
  durationText,
  outcomeText,
} from "./cutover-words";

describe("a cutover in words", () => {
  it("says what the dry run will do, both ways", () => {
    const base = { tenantKey: "42", budgetMs: 2_000 };
    expect(
      dryRunSentence({ ...base, direction: "to-shard", from: { name: "legacy" }, to: { name: "shard-2" } }),
    ).toBe(
      "Writes to tenant 42 pause for up to 2 s while shard-2 catches up; then shard-2 owns it and legacy keeps receiving its changes, so it can come back.",
    );
    expect(
      dryRunSentence({
        ...base,
        budgetMs: 1_500,
        direction: "to-legacy",
        from: { name: "shard-2" },
        to: { name: "legacy" },
      }),
    ).toBe(
      "Writes to tenant 42 pause for up to 1.5 s while legacy catches up; then legacy owns it again and shard-2 keeps receiving its changes.",
    );
  });

  it("names the button after where the tenant would go", () => {
    expect(cutoverButtonLabel({ kind: "legacy" }, "shard-2")).toBe("Cut over to shard-2");
    expect(cutoverButtonLabel({ kind: "legacy" }, null)).toBe("Cut over to its shard");
    expect(cutoverButtonLabel({ kind: "shard" }, "legacy")).toBe("Back to legacy");
  });

  it("reads durations as a person would", () => {
    expect(durationText(312.4)).toBe("312 ms");
    expect(durationText(2_000)).toBe("2 s");
    expect(durationText(1_250)).toBe("1.3 s");
  });

  it("gives the outcome: the freeze when done, the reason and what next when aborted", () => {
    const a = { tenantKey: "42", fromName: "legacy", toName: "shard-2", error: null, freezeMs: 312 };
    expect(outcomeText({ ...a, status: "done" })).toEqual({
      tone: "ok",
      title: "Tenant 42 is on shard-2.",
      detail:
        "shard-2 takes its writes now; legacy keeps receiving its changes. Its writes were paused for 312 ms.",
    });
    const aborted = outcomeText({
      ...a,
      status: "aborted",
      freezeMs: null,
      error: "The forward replication is 1500 ms behind.",
    });
    expect(aborted?.tone).toBe("error");
    expect(aborted?.title).toBe("Cutover aborted: tenant 42 stays on legacy.");
    expect(aborted?.detail).toMatch(
      /^The forward replication is 1500 ms behind\. Nothing was switched: .*try again/,
    );
    expect(outcomeText({ ...a, status: "draining" })).toBeNull();
  });

  it("has a badge for every status the store allows", () => {
    // tenant_cutover_status_check in the migration.
    const allowed = [
      "requested",
      "prechecking",
      "fencing",
      "draining",
      "flipped",
      "done",
      "aborting",
      "aborted",
    ];
    expect(Object.keys(CUTOVER_STATUS).sort()).toEqual([...allowed].sort());
  });
});
