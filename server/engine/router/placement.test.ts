import { describe, expect, it } from "vitest";
import { hashPlacement, hashTenantKey, jumpHash } from "./placement";

describe("hash placement", () => {
  it("is deterministic and spreads tenants evenly", () => {
    const placement = hashPlacement(4);
    const counts = [0, 0, 0, 0];
    for (let t = 1; t <= 20_000; t++) counts[placement.shardFor(String(t))]! += 1;
    expect(placement.shardFor("42")).toBe(hashPlacement(4).shardFor("42"));
    for (const c of counts) expect(c).toBeGreaterThan(4_500);
  });

  it("moves only about 1/N of the tenants when a shard is added", () => {
    let moved = 0;
    for (let t = 1; t <= 10_000; t++) {
      const key = hashTenantKey(String(t));
      if (jumpHash(key, 4) !== jumpHash(key, 5)) moved++;
    }
    expect(moved / 10_000).toBeGreaterThan(0.15);
    expect(moved / 10_000).toBeLessThan(0.25);
  });
});
