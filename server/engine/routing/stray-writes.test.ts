import { describe, expect, it } from "vitest";
import { decodeStrayWrites } from "./stray-writes";

/** A ring entry as the fence trigger writes it. */
const entry = (ticket: bigint, hash: number, reason: number) =>
  (ticket % (1n << 29n)) * (1n << 34n) + (BigInt(hash) + 2_147_483_648n) * 4n + BigInt(reason);

function ringWith(entries: [bigint, number, number][]): (bigint | null)[] {
  const ring: (bigint | null)[] = Array(16).fill(null);
  for (const [t, h, r] of entries) ring[Number(t % 16n)] = entry(t, h, r);
  return ring;
}

describe("decodeStrayWrites", () => {
  it("tells each new refusal's tenant hash and reason", () => {
    const ring = ringWith([
      [1n, -5, 2],
      [2n, 123_456, 1],
    ]);
    expect(decodeStrayWrites(0n, 2n, ring)).toEqual([
      { ticket: 1n, tenantHash: -5, reason: "not_owner", count: 1 },
      { ticket: 2n, tenantHash: 123_456, reason: "frozen", count: 1 },
    ]);
    expect(decodeStrayWrites(2n, 2n, ring)).toEqual([]);
  });

  it("counts refusals the ring no longer holds, folded into one entry", () => {
    const entries: [bigint, number, number][] = [];
    for (let t = 1n; t <= 40n; t++) entries.push([t, 7, 1]);
    const decoded = decodeStrayWrites(0n, 40n, ringWith(entries));
    expect(decoded[0]).toEqual({ ticket: 24n, tenantHash: null, reason: "unknown", count: 24 });
    expect(decoded.slice(1)).toHaveLength(16);
    expect(decoded.reduce((n, d) => n + d.count, 0)).toBe(40);
  });

  it("does not attribute a ring slot that still holds an older ticket", () => {
    // Ticket 17 was counted but its ring slot (17 % 16 = 1) still holds ticket 1.
    const ring = ringWith([[1n, 3, 1]]);
    expect(decodeStrayWrites(16n, 17n, ring)).toEqual([
      { ticket: 17n, tenantHash: null, reason: "unknown", count: 1 },
    ]);
  });
});
