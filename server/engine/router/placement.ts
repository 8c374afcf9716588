// Tenant → shard placement. Hash placement for now (the key-analysis issue adds size-aware
// placement with explicit overrides). The hash is of the tenant key's TEXT form — the same text
// COPY and pgoutput deliver — so the backfill and CDC place every row identically without
// parsing values.
//
// Jump consistent hash (Lamping & Veach): adding a shard moves only 1/N of the tenants.
import crypto from "node:crypto";

export function jumpHash(key: bigint, buckets: number): number {
  let b = -1n;
  let j = 0n;
  let k = key & 0xffff_ffff_ffff_ffffn;
  while (j < BigInt(buckets)) {
    b = j;
    k = (k * 2862933555777941757n + 1n) & 0xffff_ffff_ffff_ffffn;
    j = BigInt(Math.floor(((Number(b) + 1) * 2 ** 31) / Number((k >> 33n) + 1n)));
  }
  return Number(b);
}

export function hashTenantKey(text: string): bigint {
  return crypto.createHash("md5").update(text).digest().readBigUInt64BE(0);
}

export interface Placement {
  shardCount: number;
  /** Shard ordinal (0-based) for a tenant key given as text. */
  shardFor(tenantKeyText: string): number;
}

export function hashPlacement(shardCount: number): Placement {
  if (!Number.isInteger(shardCount) || shardCount < 1)
    throw new Error("A placement needs at least one shard.");
  const cache = new Map<string, number>();
  return {
    shardCount,
    shardFor(text) {
      let shard = cache.get(text);
      if (shard === undefined) {
        shard = jumpHash(hashTenantKey(text), shardCount);
        if (cache.size > 1_000_000) cache.clear();
        cache.set(text, shard);
      }
      return shard;
    },
  };
}
