// Assigning a plan's tenants to its cohort ladder: a pure function of the census's sizes, the
// operators' tags and the ladder's policy, deterministic (ties broken by the key's bytes, as the
// census's `collate "C"` orders them), so a draw can be explained and reproduced.
//
// Cohorts nest: each tenant gets the SMALLEST cohort that contains it, and cohort k is every tenant
// whose ordinal is at most k (the 1% are inside the 5%). Step sizes are cumulative: the 5% step
// holds 5% of the eligible tenants in all, the 1% among them.
//
// Order of decisions, each explained by a member's `source`:
//   1. held — a hold tag (do-not-move) keeps a tenant in no cohort; it outranks pins and lists,
//      because a tag someone set to protect a tenant must not be undone by a pin someone else wrote;
//   2. pinned — pins put a tenant into the named cohort, whatever its size or tags;
//   3. listed / drawn — steps in order: a list step takes the tenants it names, a percent or count
//      step fills up to its target from the eligible tenants its tag filters allow, smallest (or
//      largest) first; the last step (100%) takes every eligible tenant left.
//
// Drawn once, a ladder never re-draws itself: a tenant the census finds later joins the last cohort
// (placeNewTenants), and an existing member moves only by an operator's audited edit.
import type { TLadderPolicy } from "../../schemas/cohorts";

export interface TenantSize {
  tenant: string;
  /** Rows of the tenant over every sharded table, from the census. */
  rows: number;
}

export type MemberSource = "drawn" | "pinned" | "listed" | "held" | "new-tenant" | "moved";

export interface Member {
  /** The smallest cohort that contains the tenant, or null: held, in no cohort. */
  ordinal: number | null;
  source: MemberSource;
}

export interface DrawnCohort {
  ordinal: number;
  label: string;
  /** Tenants cohort k holds in all (nested) that the step asked for; null for a list step. */
  target: number | null;
  /** Tenants whose smallest cohort is this one. */
  added: number;
  /** Tenants in this cohort, nested (every member with ordinal ≤ this one). */
  cumulative: number;
  /** Why the cohort is smaller than its target, if it is. */
  shortfall: string | null;
}

export interface Assignment {
  members: Map<string, Member>;
  cohorts: DrawnCohort[];
  /** Pins and list entries a hold tag overruled. */
  notes: string[];
}

export class AssignError extends Error {}

/** Compares by Unicode code points: the order of UTF-8 bytes, which is `collate "C"`'s. */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i) ?? 0;
    const y = b.codePointAt(i) ?? 0;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

function labelOf(step: TLadderPolicy["steps"][number], ordinal: number): string {
  if (step.label) return step.label;
  if (step.kind === "percent") return `${step.value}%`;
  if (step.kind === "count") return `${step.value} tenants`;
  return `cohort ${ordinal}`;
}

function hasAny(tags: readonly string[] | undefined, wanted: readonly string[]): boolean {
  return Boolean(tags?.some((t) => wanted.includes(t)));
}

export function assignCohorts(input: {
  tenants: readonly TenantSize[];
  tags: ReadonlyMap<string, readonly string[]>;
  policy: TLadderPolicy;
}): Assignment {
  const { policy, tags } = input;
  const sizes = new Map(input.tenants.map((t) => [t.tenant, t.rows]));
  const unknown = [
    ...policy.pins.map((p) => p.tenantKey),
    ...policy.steps.flatMap((s) => (s.kind === "list" ? (s.tenants ?? []) : [])),
  ].filter((t) => !sizes.has(t));
  if (unknown.length > 0) {
    const shown = [...new Set(unknown)].slice(0, 5).join(", ");
    throw new AssignError(
      `The census has no tenant ${shown}${unknown.length > 5 ? ` (and ${unknown.length - 5} more)` : ""}: pin or list only tenants legacy holds rows of, or wait for the census to count them.`,
    );
  }

  const members = new Map<string, Member>();
  const notes: string[] = [];
  const held = (tenant: string) => hasAny(tags.get(tenant), policy.holdTags);
  for (const t of input.tenants) if (held(t.tenant)) members.set(t.tenant, { ordinal: null, source: "held" });
  const eligible = input.tenants.length - members.size;

  for (const pin of policy.pins) {
    if (held(pin.tenantKey)) {
      notes.push(`${pin.tenantKey} is pinned to cohort ${pin.ordinal} but tagged to be held: held.`);
      continue;
    }
    members.set(pin.tenantKey, { ordinal: pin.ordinal, source: "pinned" });
  }

  const smallestFirst = [...input.tenants].sort((a, b) => a.rows - b.rows || compareKeys(a.tenant, b.tenant));
  const largestFirst = [...input.tenants].sort((a, b) => b.rows - a.rows || compareKeys(a.tenant, b.tenant));
  const cohorts: DrawnCohort[] = [];
  const within = (k: number) => {
    let n = 0;
    for (const m of members.values()) if (m.ordinal !== null && m.ordinal <= k) n++;
    return n;
  };

  policy.steps.forEach((step, i) => {
    const ordinal = i + 1;
    const last = ordinal === policy.steps.length;
    let target: number | null = null;
    let shortfall: string | null = null;
    const before = within(ordinal);
    if (step.kind === "list") {
      for (const tenant of step.tenants ?? []) {
        if (members.has(tenant)) {
          if (held(tenant))
            notes.push(`${tenant} is listed in cohort ${ordinal} but tagged to be held: held.`);
          continue; // already in a smaller (or pinned) cohort: it stays there
        }
        members.set(tenant, { ordinal, source: "listed" });
      }
    } else {
      target = last
        ? eligible
        : step.kind === "percent"
          ? Math.ceil((eligible * (step.value ?? 0)) / 100)
          : Math.min(step.value ?? 0, eligible);
      let need = Math.max(0, target - before);
      const ranked = step.order === "largest" ? largestFirst : smallestFirst;
      for (const t of ranked) {
        if (need === 0) break;
        if (members.has(t.tenant)) continue;
        const own = tags.get(t.tenant);
        if (!last && step.includeTags.length > 0 && !hasAny(own, step.includeTags)) continue;
        if (!last && hasAny(own, step.excludeTags)) continue;
        members.set(t.tenant, { ordinal, source: "drawn" });
        need--;
      }
      if (need > 0) {
        shortfall = `Only ${target - need} of the ${target} tenants the step asks for could be drawn: the others are excluded by its tag filters.`;
      }
    }
    const cumulative = within(ordinal);
    cohorts.push({
      ordinal,
      label: labelOf(step, ordinal),
      target,
      added: cumulative - before,
      cumulative,
      shortfall,
    });
  });
  return { members, cohorts, notes };
}

/**
 * Tenants the census counts that the ladder has never placed: each joins the last cohort (or is
 * held, if tagged to be), and no existing member moves. Returns only the new members.
 */
export function placeNewTenants(input: {
  tenants: readonly TenantSize[];
  placed: ReadonlySet<string>;
  tags: ReadonlyMap<string, readonly string[]>;
  holdTags: readonly string[];
  lastOrdinal: number;
}): Map<string, Member> {
  const added = new Map<string, Member>();
  for (const t of [...input.tenants].sort((a, b) => compareKeys(a.tenant, b.tenant))) {
    if (input.placed.has(t.tenant)) continue;
    added.set(
      t.tenant,
      hasAny(input.tags.get(t.tenant), input.holdTags)
        ? { ordinal: null, source: "held" }
        : { ordinal: input.lastOrdinal, source: "new-tenant" },
    );
  }
  return added;
}
