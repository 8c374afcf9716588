// A tenant's derived state follows the cutover runner's rows through a whole life — copied,
// promoted, rolled back, a failed attempt, promoted again — taking only moves the diagram allows.
import { describe, expect, it } from "vitest";
import type { CutoverStatus } from "./cutover";
import { TENANT_STATE_MOVES, type TenantState, type TenantStateFacts, tenantState } from "./tenant-state";

describe("tenant state", () => {
  it("follows a tenant's life through the allowed moves only", () => {
    const attempt = (
      direction: "to-shard" | "to-legacy",
      status: CutoverStatus | "requested",
      error: string | null = null,
    ) => ({
      direction,
      status,
      error,
    });
    const life: [TenantStateFacts, TenantState][] = [
      [{ copied: false, onShard: false, latestCutover: null }, "copying"],
      [{ copied: true, onShard: false, latestCutover: null }, "ready"],
      [{ copied: true, onShard: false, latestCutover: attempt("to-shard", "requested") }, "cutting_over"],
      [{ copied: true, onShard: false, latestCutover: attempt("to-shard", "draining") }, "cutting_over"],
      // The flip commits the owner and the status together; finishing still counts as cutting over.
      [{ copied: true, onShard: true, latestCutover: attempt("to-shard", "flipped") }, "cutting_over"],
      [{ copied: true, onShard: true, latestCutover: attempt("to-shard", "done") }, "on_shard"],
      [{ copied: true, onShard: true, latestCutover: attempt("to-legacy", "fencing") }, "rolling_back"],
      [{ copied: true, onShard: false, latestCutover: attempt("to-legacy", "done") }, "on_legacy"],
      [{ copied: true, onShard: false, latestCutover: attempt("to-shard", "prechecking") }, "cutting_over"],
      [
        {
          copied: true,
          onShard: false,
          latestCutover: attempt("to-shard", "aborted", "freeze budget missed"),
        },
        "failed",
      ],
      [{ copied: true, onShard: false, latestCutover: attempt("to-shard", "fencing") }, "cutting_over"],
      [{ copied: true, onShard: true, latestCutover: attempt("to-shard", "done") }, "on_shard"],
    ];
    let previous: TenantState | null = null;
    for (const [facts, expected] of life) {
      const { state } = tenantState(facts);
      expect(state, JSON.stringify(facts)).toBe(expected);
      if (previous && previous !== state)
        expect(TENANT_STATE_MOVES[previous], `${previous} → ${state}`).toContain(state);
      previous = state;
    }
  });

  it("carries a failed attempt's error, and an operator's abort (no error) leaves the tenant where it was", () => {
    expect(
      tenantState({
        copied: true,
        onShard: false,
        latestCutover: { direction: "to-shard", status: "aborted", error: "lag 9 s" },
      }),
    ).toEqual({ state: "failed", error: "lag 9 s" });
    expect(
      tenantState({
        copied: true,
        onShard: true,
        latestCutover: { direction: "to-legacy", status: "aborted", error: null },
      }),
    ).toEqual({ state: "on_shard", error: null });
  });
});
