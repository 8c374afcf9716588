// Reading the writes a database's fence refused (see fence.ts for why they live in sequences).
//
// Each refusal takes ticket t from shardshift.stray_write_ticket, then writes ring entry t % 16:
//   value = (t mod 2^29) · 2^34 + (hashtext(tenant) + 2^31) · 4 + reason
// A reader that last saw ticket L and now sees counter C owns tickets L+1 … C. Ticket t is told
// (tenant hash and reason) when its ring entry still carries t; otherwise — overwritten by a later
// refusal, or read in the microseconds between the two steps — it is counted as "unknown". The
// tenant is found from its hash among the tenants the plan knows (fence rows, routes, census).
import { STRAY_REASONS, STRAY_RING_SIZE, type StrayReason } from "./fence-sql";

export interface StrayRefusal {
  /** The highest ticket this entry covers. */
  ticket: bigint;
  /** hashtext() of the tenant key, or null when it could no longer be told. */
  tenantHash: number | null;
  reason: StrayReason;
  /** 1 for a told refusal; the number of refusals folded together for untold ones. */
  count: number;
}

/**
 * The reason of a stray write forward CDC found in legacy's stream (a row of a tenant legacy no
 * longer owned, written by a session that bypassed the fence): its ticket is the commit LSN of
 * the transaction that wrote it, not a counter value (ownership-route.ts, cdc-strays.ts).
 */
export const CDC_STRAY_REASON = "applied_after_flip";

const TICKET_SPACE = 1n << 29n;

export function decodeRingEntry(value: bigint): {
  ticketLow: bigint;
  tenantHash: number;
  reason: StrayReason;
} {
  return {
    ticketLow: value >> 34n,
    tenantHash: Number(((value >> 2n) & 0xffff_ffffn) - 2_147_483_648n),
    reason: STRAY_REASONS[Number(value & 3n)] ?? "unknown",
  };
}

/** Pure: the refusals after `lastSeen`, given the counter and the ring as read. */
export function decodeStrayWrites(
  lastSeen: bigint,
  counter: bigint,
  ring: readonly (bigint | null)[],
): StrayRefusal[] {
  if (counter <= lastSeen) return [];
  const out: StrayRefusal[] = [];
  const untold = (ticket: bigint, count: number) => {
    const previous = out.at(-1);
    if (previous && previous.tenantHash === null && previous.ticket === ticket - BigInt(count)) {
      previous.ticket = ticket;
      previous.count += count;
    } else {
      out.push({ ticket, tenantHash: null, reason: "unknown", count });
    }
  };
  // Tickets older than the ring's reach were overwritten for certain.
  const firstInRing = counter - BigInt(STRAY_RING_SIZE) + 1n;
  let t = lastSeen + 1n;
  if (t < firstInRing) {
    untold(firstInRing - 1n, Number(firstInRing - t));
    t = firstInRing;
  }
  for (; t <= counter; t++) {
    const value = ring[Number(t % BigInt(STRAY_RING_SIZE))] ?? null;
    const entry = value === null ? null : decodeRingEntry(value);
    if (entry && entry.ticketLow === t % TICKET_SPACE) {
      out.push({ ticket: t, tenantHash: entry.tenantHash, reason: entry.reason, count: 1 });
    } else {
      untold(t, 1);
    }
  }
  return out;
}
