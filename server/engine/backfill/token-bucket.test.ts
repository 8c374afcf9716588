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
});
