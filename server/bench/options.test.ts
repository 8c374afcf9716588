import { describe, expect, it } from "vitest";
import { BenchUsageError, DEFAULT_BENCH_OPTIONS, parseBenchOptions } from "./options";

describe("parseBenchOptions", () => {
  it("runs every step unless --only names some", () => {
    expect(parseBenchOptions([])?.only).toBeNull();
    const only = parseBenchOptions(["--only", "parity, busy"])?.only;
    expect(only ? [...only].sort() : null).toEqual(["busy", "parity"]);
  });

  it("refuses a step it does not know, naming the ones it does", () => {
    expect(() => parseBenchOptions(["--only", "parity,cdc-busy"])).toThrow(BenchUsageError);
    expect(() => parseBenchOptions(["--only", "parity,cdc-busy"])).toThrow(
      /backfill, parity, cdc, busy, throttled, cutover, breaker, promotion, routing/,
    );
    expect(() => parseBenchOptions(["--only", ","])).toThrow(BenchUsageError);
  });

  it("knows the breaker and promotion steps, and keeps the promoted cohort inside the dataset", () => {
    const only = parseBenchOptions(["--only", "breaker,promotion"])?.only;
    expect(only ? [...only].sort() : null).toEqual(["breaker", "promotion"]);
    expect(parseBenchOptions([])?.promotionTenants).toBe(500);
    expect(parseBenchOptions(["--promotion-tenants", "50", "--promotion-seconds", "60"])).toMatchObject({
      promotionTenants: 50,
      promotionSeconds: 60,
    });
    expect(() =>
      parseBenchOptions([
        "--tenants",
        "400",
        "--cutover-tenants",
        "10",
        "--cutover-back",
        "5",
        "--promotion-tenants",
        "400",
      ]),
    ).toThrow(/must be below the dataset's --tenants/);
  });

  it("takes the parity rounds, at least one", () => {
    expect(parseBenchOptions([])?.parityRounds).toBe(DEFAULT_BENCH_OPTIONS.parityRounds);
    expect(parseBenchOptions(["--parity-rounds", "5"])?.parityRounds).toBe(5);
    expect(() => parseBenchOptions(["--parity-rounds", "0"])).toThrow(BenchUsageError);
  });

  it("takes the busy-worker test's pairs, at least one", () => {
    expect(parseBenchOptions([])?.busyPairs).toBe(5);
    expect(parseBenchOptions(["--busy-pairs", "1"])?.busyPairs).toBe(1);
    expect(() => parseBenchOptions(["--busy-pairs", "0"])).toThrow(BenchUsageError);
  });
});
