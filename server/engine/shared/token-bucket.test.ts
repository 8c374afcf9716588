import { describe, expect, it } from "vitest";
import { TokenBucket } from "./token-bucket";

describe("token bucket", () => {
  it("holds the long-run rate for any chunk size, and follows rate changes", () => {
    let clock = 0;
    const bucket = new TokenBucket(1000, 1, () => clock);
    let sent = 0;
    // Send 250-row chunks as fast as allowed for 10 simulated seconds.
    while (clock < 10_000) {
      const wait = bucket.reserve(250);
      clock += wait;
      if (clock <= 10_000) sent += 250;
    }
    expect(sent / 10).toBeGreaterThan(950);
    expect(sent / 10).toBeLessThan(1050);

    bucket.setRate(200);
    const start = clock;
    let after = 0;
    while (clock < start + 10_000) {
      clock += bucket.reserve(100);
      if (clock <= start + 10_000) after += 100;
    }
    expect(after / 10).toBeGreaterThan(180);
    expect(after / 10).toBeLessThan(260);
  });

  it("keeps a debt's wait in time when the rate drops, so a throttle never stalls the copier", () => {
    let clock = 0;
    const bucket = new TokenBucket(20_000, 1, () => clock);
    // A 20,000-row chunk at 20,000 rows/s owes one second.
    expect(bucket.reserve(20_000)).toBe(1_000);
    bucket.setRate(1_000);
    // Still about one second to wait, not the twenty the rows would take at the new rate.
    const wait = bucket.reserve(0);
    expect(wait).toBeGreaterThan(900);
    expect(wait).toBeLessThan(1_100);
    clock += wait;
    // From then on the new rate holds.
    expect(bucket.reserve(250)).toBe(250);
  });
});
