import { describe, expect, it } from "vitest";
import { PLAN_PHASES } from "../../schemas/plan";
import { decideMovementCancel } from "./movement-cancel";

describe("cancelling a data movement", () => {
  it("is allowed before the breaker phase while no tenant is on a shard", () => {
    for (const phase of [
      "two_way_cdc",
      "async_backfill",
      "bit_by_bit_routing",
      "automated_parity",
    ] as const) {
      expect(decideMovementCancel({ phase, tenantsOnShards: 0 })).toEqual({ allowed: true });
    }
  });

  it("is refused from the breaker phase on, with the reason and the way out", () => {
    for (const phase of PLAN_PHASES.slice(PLAN_PHASES.indexOf("live_rollback"))) {
      const outcome = decideMovementCancel({ phase, tenantsOnShards: 0 });
      expect(outcome.allowed).toBe(false);
      if (!outcome.allowed)
        expect(outcome.reason).toMatch(/rollback path depends on this replication.*Revert/);
    }
  });

  it("is refused while any tenant is on a shard, in any phase", () => {
    const outcome = decideMovementCancel({ phase: "async_backfill", tenantsOnShards: 3 });
    expect(outcome).toEqual({
      allowed: false,
      reason: expect.stringMatching(/^3 tenants are served by a shard/),
    });
  });

  it("is refused while a cutover is in flight, in any phase", () => {
    const outcome = decideMovementCancel({ phase: "two_way_cdc", tenantsOnShards: 0, cutoversInFlight: 1 });
    expect(outcome).toEqual({
      allowed: false,
      reason: expect.stringMatching(/^A tenant cutover is in flight/),
    });
  });
});
