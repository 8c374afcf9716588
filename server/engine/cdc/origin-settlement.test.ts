// The xid read from pg_stat_activity (32 bits) as the xid8 pg_xact_status needs (the settlement of a
// stamped COMMIT whose answer was lost: origin-settlement.ts).
import { describe, expect, it } from "vitest";
import { fullXid } from "./origin-settlement";

const EPOCH = 0x1_0000_0000n;

describe("fullXid", () => {
  it("is in the snapshot's epoch for an xid near its xmax, above or below", () => {
    expect(fullXid("761", "761")).toBe("761");
    expect(fullXid("761", "790")).toBe("761");
    expect(fullXid("795", "790")).toBe("795");
    expect(fullXid("100", String(3n * EPOCH + 120n))).toBe(String(3n * EPOCH + 100n));
  });

  it("crosses an epoch boundary either way", () => {
    // xmax just past a wraparound, the xid just before it.
    expect(fullXid(String(0xffff_fff0n), String(3n * EPOCH + 5n))).toBe(String(2n * EPOCH + 0xffff_fff0n));
    // xmax just before a wraparound, a running xid just after it.
    expect(fullXid("3", String(2n * EPOCH + 0xffff_fff0n))).toBe(String(3n * EPOCH + 3n));
  });
});
