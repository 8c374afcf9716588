// Seeded randomness for the demo: a small PRNG and a Zipf sampler over ranks.
//
// Real SaaS databases are skewed: a handful of tenants own a large share of rows and writes. The
// shard-key analysis, bin packing and cohort selection only show their worth on skewed data, so the
// demo draws tenants from a Zipf distribution (P(rank k) ∝ 1 / k^s). The dataset loader computes the
// same weights inside PostgreSQL; this module serves the write workload in Node.

/** The skew exponent shared by the dataset and the workload: the top tenant holds ~5% at 2,000 tenants. */
export const DEMO_ZIPF_EXPONENT = 0.8;

/** A uniform [0, 1) generator; deterministic for a given seed (mulberry32). */
export type Random = () => number;

export function createRandom(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Returns a 0-based rank in [0, n): rank 0 is the most frequent. */
export type ZipfSampler = () => number;

export function createZipfSampler(n: number, exponent: number, random: Random): ZipfSampler {
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`A Zipf sampler needs at least one rank, got ${n}; load the demo dataset first.`);
  }
  // A cumulative table and a binary search: O(n) memory once, O(log n) per draw, exact probabilities.
  const cumulative = new Float64Array(n);
  let total = 0;
  for (let rank = 0; rank < n; rank++) {
    total += 1 / (rank + 1) ** exponent;
    cumulative[rank] = total;
  }
  return () => {
    const target = random() * total;
    let low = 0;
    let high = n - 1;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if ((cumulative[middle] ?? total) < target) low = middle + 1;
      else high = middle;
    }
    return low;
  };
}

/** Picks one entry by relative weight, e.g. the kind of the next write. */
export function pickWeighted<T>(entries: readonly (readonly [T, number])[], random: Random): T {
  const total = entries.reduce((sum, [, weight]) => sum + weight, 0);
  let target = random() * total;
  for (const [value, weight] of entries) {
    target -= weight;
    if (target < 0) return value;
  }
  const last = entries.at(-1);
  if (!last) throw new Error("pickWeighted needs at least one entry.");
  return last[0];
}
