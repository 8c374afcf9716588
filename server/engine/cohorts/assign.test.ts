// The cohort draw, without a database: nesting and cumulative sizes, the default ladder's canary
// without VIPs, held and pinned tenants, list and largest-first steps, determinism, and stability
// when the census later finds new tenants (they join the last cohort, nobody else moves).
import { describe, expect, it } from "vitest";
import { defaultLadder, type TLadderPolicy, ZLadderPolicy } from "../../schemas/cohorts";
import { assignCohorts, compareKeys, placeNewTenants, type TenantSize } from "./assign";

/** Tenants "t001" … with rows = their number × 10 (t001 smallest). */
function tenants(n: number): TenantSize[] {
  return Array.from({ length: n }, (_, i) => ({
    tenant: `t${String(i + 1).padStart(3, "0")}`,
    rows: (i + 1) * 10,
  }));
}

const none = new Map<string, string[]>();

function ordinalsOf(assignment: ReturnType<typeof assignCohorts>) {
  return Object.fromEntries([...assignment.members].map(([t, m]) => [t, m.ordinal]));
}

describe("assignCohorts", () => {
  it("nests cumulative steps, smallest first: the 1% are inside the 5%", () => {
    const a = assignCohorts({ tenants: tenants(200), tags: none, policy: defaultLadder([1, 5, 25, 100]) });
    expect(a.cohorts.map((c) => [c.label, c.added, c.cumulative])).toEqual([
      ["1%", 2, 2],
      ["5%", 8, 10],
      ["25%", 40, 50],
      ["100%", 150, 200],
    ]);
    const o = ordinalsOf(a);
    expect([o.t001, o.t002, o.t003, o.t010, o.t011, o.t050, o.t051, o.t200]).toEqual([
      1, 1, 2, 2, 3, 3, 4, 4,
    ]);
    // Every tenant in exactly one smallest cohort.
    expect(a.members.size).toBe(200);
  });

  it("matches the census-ranked drawing cohort progress used before ladders were stored", () => {
    // ceil(n·p/100) smallest first, ties by key: what cohort-progress.ts's SQL computes.
    const list = tenants(37).map((t, i) => ({ ...t, rows: i % 3 }));
    const a = assignCohorts({ tenants: list, tags: none, policy: defaultLadder([1, 5, 25, 100]) });
    const ranked = [...list].sort((x, y) => x.rows - y.rows || compareKeys(x.tenant, y.tenant));
    ranked.forEach((t, i) => {
      const expected = [1, 5, 25, 100].findIndex((p) => i + 1 <= Math.ceil((37 * p) / 100)) + 1;
      expect(a.members.get(t.tenant)?.ordinal, t.tenant).toBe(expected);
    });
  });

  it("keeps VIPs out of the canary cohort, held tenants out of every cohort", () => {
    const tags = new Map([
      ["t001", ["vip"]],
      ["t002", ["do-not-move", "vip"]],
      ["t150", ["do-not-move"]],
    ]);
    const a = assignCohorts({ tenants: tenants(200), tags, policy: defaultLadder([1, 5, 25, 100]) });
    const o = ordinalsOf(a);
    // 198 eligible: the 1% is 2 tenants, the two smallest eligible non-VIPs.
    expect([o.t003, o.t004]).toEqual([1, 1]);
    expect(o.t001).toBe(2); // a VIP, not excluded from the 5%
    expect(o.t002).toBeNull();
    expect(o.t150).toBeNull();
    expect(a.members.get("t150")?.source).toBe("held");
    expect(a.cohorts.at(-1)?.cumulative).toBe(198);
  });

  it("puts pinned tenants where they are pinned, counted in that cohort's size", () => {
    const policy = ZLadderPolicy.parse({
      ...defaultLadder([1, 5, 25, 100]),
      pins: [
        { tenantKey: "t199", ordinal: 1 }, // a big canary on purpose
        { tenantKey: "t001", ordinal: 4 }, // the smallest, kept for last
      ],
    });
    const a = assignCohorts({ tenants: tenants(200), tags: none, policy });
    const o = ordinalsOf(a);
    expect(o.t199).toBe(1);
    expect(a.members.get("t199")?.source).toBe("pinned");
    expect(o.t001).toBe(4);
    // The 1% is two tenants: the pin and the smallest unpinned one.
    expect(a.cohorts[0]?.cumulative).toBe(2);
    expect(o.t002).toBe(1);
    expect(o.t003).toBe(2);
  });

  it("lets a hold tag overrule a pin, and says so", () => {
    const policy = ZLadderPolicy.parse({
      ...defaultLadder([50, 100]),
      pins: [{ tenantKey: "t003", ordinal: 1 }],
    });
    const a = assignCohorts({ tenants: tenants(4), tags: new Map([["t003", ["do-not-move"]]]), policy });
    expect(a.members.get("t003")).toEqual({ ordinal: null, source: "held" });
    expect(a.notes.join(" ")).toMatch(/t003 is pinned to cohort 1 but tagged to be held/);
  });

  it("fills list, count and largest-first steps, with include and exclude tags", () => {
    const policy: TLadderPolicy = ZLadderPolicy.parse({
      steps: [
        { kind: "list", tenants: ["t050", "t060"], label: "friendly" },
        { kind: "count", value: 5, order: "largest", excludeTags: ["vip"] },
        { kind: "count", value: 8, includeTags: ["eu"] },
        { kind: "percent", value: 100 },
      ],
    });
    const tags = new Map([
      ["t100", ["vip"]],
      ["t010", ["eu"]],
      ["t020", ["eu"]],
    ]);
    const a = assignCohorts({ tenants: tenants(100), tags, policy });
    const o = ordinalsOf(a);
    expect([o.t050, o.t060]).toEqual([1, 1]);
    // 5 in all: the two listed and the three largest non-VIPs.
    expect([o.t099, o.t098, o.t097, o.t096, o.t100]).toEqual([2, 2, 2, 4, 4]);
    // Only two tenants carry "eu": the step comes up short and says why.
    expect([o.t010, o.t020]).toEqual([3, 3]);
    expect(a.cohorts[2]?.cumulative).toBe(7);
    expect(a.cohorts[2]?.shortfall).toMatch(/7 of the 8 tenants/);
    expect(a.members.get("t050")?.source).toBe("listed");
  });

  it("refuses pins and lists naming tenants the census does not know", () => {
    const policy = ZLadderPolicy.parse({
      ...defaultLadder([100]),
      pins: [{ tenantKey: "ghost", ordinal: 1 }],
    });
    expect(() => assignCohorts({ tenants: tenants(3), tags: none, policy })).toThrow(
      /census has no tenant ghost/,
    );
  });

  it("is deterministic whatever the census's order", () => {
    const list = tenants(120).map((t, i) => ({ ...t, rows: i % 7 }));
    const shuffled = [...list].sort((a, b) => compareKeys(b.tenant, a.tenant));
    const policy = defaultLadder([1, 5, 25, 100]);
    expect(ordinalsOf(assignCohorts({ tenants: shuffled, tags: none, policy }))).toEqual(
      ordinalsOf(assignCohorts({ tenants: list, tags: none, policy })),
    );
  });

  it('orders ties by the key\'s bytes, as collate "C" does', () => {
    // U+FF21 sorts after U+1F600 by UTF-16 code units, before it by code points (and UTF-8 bytes).
    expect(compareKeys("\uff21", "😀")).toBeLessThan(0);
    expect(compareKeys("10", "9")).toBeLessThan(0);
    expect(compareKeys("a", "ab")).toBeLessThan(0);
  });
});

describe("placeNewTenants", () => {
  it("puts tenants the census finds after the draw in the last cohort, and moves nobody", () => {
    const policy = defaultLadder([1, 5, 25, 100]);
    const before = assignCohorts({ tenants: tenants(100), tags: none, policy });
    // Three new tenants, one of them the smallest of all, one tagged to be held.
    const grown = [
      ...tenants(100),
      { tenant: "new-a", rows: 1 },
      { tenant: "new-b", rows: 5_000 },
      { tenant: "new-c", rows: 3 },
    ];
    const added = placeNewTenants({
      tenants: grown,
      placed: new Set(before.members.keys()),
      tags: new Map([["new-c", ["do-not-move"]]]),
      holdTags: policy.holdTags,
      lastOrdinal: 4,
    });
    expect(Object.fromEntries(added)).toEqual({
      "new-a": { ordinal: 4, source: "new-tenant" },
      "new-b": { ordinal: 4, source: "new-tenant" },
      "new-c": { ordinal: null, source: "held" },
    });
    // Redrawing from scratch WOULD move people (new-a is now the smallest): the point of storing.
    const redrawn = assignCohorts({ tenants: grown, tags: none, policy });
    expect(redrawn.members.get("new-a")?.ordinal).toBe(1);
    expect([...before.members].some(([t, m]) => redrawn.members.get(t)?.ordinal !== m.ordinal)).toBe(true);
  });
});

describe("ladder policy", () => {
  it("refuses a ladder that leaves tenants out, or whose percentages do not grow", () => {
    const refusal = (p: unknown) => {
      const r = ZLadderPolicy.safeParse(p);
      return r.success ? null : r.error.issues.map((i) => i.message).join(" ");
    };
    expect(refusal(defaultLadder([1, 5, 25, 100]))).toBeNull();
    expect(refusal({ steps: [{ kind: "percent", value: 50 }] })).toMatch(/last step must be 100%/);
    expect(refusal({ steps: [{ kind: "percent", value: 100, excludeTags: ["vip"] }] })).toMatch(
      /no tag filter/,
    );
    expect(
      refusal({
        steps: [
          { kind: "percent", value: 5 },
          { kind: "percent", value: 5 },
          { kind: "percent", value: 100 },
        ],
      }),
    ).toMatch(/larger than the one before/);
    expect(
      refusal({ steps: [{ kind: "percent", value: 100 }], pins: [{ tenantKey: "a", ordinal: 2 }] }),
    ).toMatch(/does not have/);
  });
});
