import { describe, expect, it } from "vitest";
import { breakerInFlight, breakerRecoveryFor, nextBreakerStatus, planBreakerState } from "./breaker";

describe("breaker state machine", () => {
  it("runs tripped → rolling_back → rolled_back → armed", () => {
    expect(nextBreakerStatus("tripped", "claimed")).toEqual({ ok: true, to: "rolling_back" });
    expect(nextBreakerStatus("rolling_back", "finished")).toEqual({ ok: true, to: "rolled_back" });
    expect(nextBreakerStatus("rolled_back", "rearmed")).toEqual({ ok: true, to: "armed" });
  });

  it("goes back to tripped when interrupted before the flip, and fails when it gives up", () => {
    expect(nextBreakerStatus("rolling_back", "interrupted")).toEqual({ ok: true, to: "tripped" });
    expect(nextBreakerStatus("rolling_back", "gave-up")).toEqual({ ok: true, to: "failed" });
    expect(nextBreakerStatus("failed", "rearmed")).toEqual({ ok: true, to: "armed" });
  });

  it("refuses to re-arm a rollback in flight, or an armed breaker, saying why", () => {
    const inFlight = nextBreakerStatus("rolling_back", "rearmed");
    expect(inFlight.ok).toBe(false);
    expect(!inFlight.ok && inFlight.reason).toMatch(/once it has ended/);
    const armed = nextBreakerStatus("armed", "rearmed");
    expect(!armed.ok && armed.reason).toMatch(/already armed/);
    expect(nextBreakerStatus("rolled_back", "claimed").ok).toBe(false);
  });

  it("undoes before the flip and finishes after it", () => {
    expect(breakerRecoveryFor(null)).toBe("undo");
    expect(breakerRecoveryFor(12n)).toBe("finish");
  });

  it("reads the plan's breaker from its newest trip", () => {
    expect(planBreakerState(null)).toBe("armed");
    expect(planBreakerState({ status: "rolling_back" })).toBe("rolling_back");
    expect(breakerInFlight("tripped")).toBe(true);
    expect(breakerInFlight("failed")).toBe(false);
  });
});
