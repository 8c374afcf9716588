// A plan's cohort ladder, drawn once and stored (issue 14): who is in which cohort never changes by
// itself — not when settings change, not when the census grows — only by an audited redraw (with a
// reason) or an audited move of one tenant. Tenant tags, which draws read, are audited edits too.
//
// Every write locks the plan's row first (as plan transitions do), so a draw, a redraw and a move
// of the same plan are serialised: two concurrent first draws cannot both see "not drawn yet".
import { db } from "../../db";
import {
  AssignError,
  assignCohorts,
  compareKeys,
  type MemberSource,
  placeNewTenants,
  type TenantSize,
} from "../../engine/cohorts/assign";
import type { CutoverDirection, CutoverStatus } from "../../engine/state/cutover";
import { TENANT_STATES, type TenantState, tenantState } from "../../engine/state/tenant-state";
import { AppError } from "../../errors";
import type { Prisma } from "../../generated/prisma/client";
import {
  DEFAULT_HOLD_TAGS,
  defaultLadder,
  type TDrawLadderInput,
  type TLadderPolicy,
  type TMoveTenantInput,
  type TSetTagsInput,
  ZCohortStep,
} from "../../schemas/cohorts";
import { DEFAULT_PLAN_SETTINGS, ZPlanSettings } from "../../schemas/plan";
import type { Actor } from "../actor";
import { appendAuditEvent } from "../audit/audit-log";
import { TENANT_ROWS_CTES } from "../movement/cohort-progress";

type Tx = Prisma.TransactionClient;

async function lockPlan(tx: Tx, planId: string) {
  const [plan] = await tx.$queryRaw<{ name: string; status: string; settings: unknown }[]>`
    select name, status::text, settings from plan where id = ${planId}::uuid for no key update`;
  if (!plan) throw new AppError("NOT_FOUND", "No such plan: it may have been removed, or the link is wrong.");
  if (plan.status === "archived") {
    throw new AppError(
      "PRECONDITION_FAILED",
      `"${plan.name}" is archived and read-only; its cohorts and tags cannot change.`,
    );
  }
  return plan;
}

async function tenantSizes(tx: Tx, planId: string): Promise<TenantSize[]> {
  const rows = await tx.$queryRaw<{ tenant_key: string; rows: number }[]>`
    select tenant_key, sum(rows)::float8 as rows from tenant_census where plan_id = ${planId}::uuid group by tenant_key`;
  return rows.map((r) => ({ tenant: r.tenant_key, rows: r.rows }));
}

async function tagsOf(tx: Tx, planId: string, tenants?: readonly string[]): Promise<Map<string, string[]>> {
  const rows = await tx.tenantTag.findMany({
    where: { planId, ...(tenants ? { tenantKey: { in: [...tenants] } } : {}) },
    orderBy: [{ tenantKey: "asc" }, { tag: "asc" }],
    select: { tenantKey: true, tag: true },
  });
  const tags = new Map<string, string[]>();
  for (const r of rows) tags.set(r.tenantKey, [...(tags.get(r.tenantKey) ?? []), r.tag]);
  return tags;
}

/** Tenants that have left legacy, or are leaving or coming back: their cohort is part of history. */
async function tenantsInMotion(tx: Tx, planId: string): Promise<Set<string>> {
  const rows = await tx.$queryRaw<{ tenant_key: string }[]>`
    select tenant_key from tenant_route where plan_id = ${planId}::uuid and owner_database_id is not null
    union
    select tenant_key from tenant_cutover where plan_id = ${planId}::uuid and status not in ('done', 'aborted')`;
  return new Set(rows.map((r) => r.tenant_key));
}

function ladderSummary(cohorts: { ordinal: number; label: string }[], members: { ordinal: number | null }[]) {
  return {
    cohorts: cohorts.map((c) => ({
      ordinal: c.ordinal,
      label: c.label,
      tenants: members.filter((m) => m.ordinal === c.ordinal).length,
    })),
    held: members.filter((m) => m.ordinal === null).length,
  };
}

/**
 * Draws the plan's ladder from the census: once. Drawing again needs `redraw` and a reason, and
 * even then a tenant that has left legacy (or is cutting over) keeps its cohort.
 */
export async function drawLadder(actor: Actor, input: TDrawLadderInput) {
  // The router's schema says so too; a caller inside the server must not skip the reason either.
  if (input.redraw && (input.reason?.trim().length ?? 0) < 3) {
    throw new AppError(
      "BAD_REQUEST",
      "Say why the ladder is drawn again (at least 3 characters): it goes into the audit log.",
      {
        field: "reason",
      },
    );
  }
  await db().$transaction(
    async (tx) => {
      const plan = await lockPlan(tx, input.planId);
      const settings = ZPlanSettings.parse({ ...DEFAULT_PLAN_SETTINGS, ...(plan.settings as object) });
      const movement = await tx.dataMovement.findUnique({
        where: { planId: input.planId },
        select: { censusAt: true },
      });
      if (!movement?.censusAt) {
        throw new AppError(
          "PRECONDITION_FAILED",
          "The tenant census has not counted this plan's tenants yet, and cohorts are drawn from it: start the data movement and wait for the census (the backfill page shows when it is done), then draw.",
        );
      }
      const existing = await tx.cohort.findMany({
        where: { planId: input.planId },
        orderBy: { ordinal: "asc" },
      });
      const first = existing[0];
      if (first && !input.redraw) {
        throw new AppError(
          "CONFLICT",
          `The ladder of "${plan.name}" was drawn on ${first.assignedAt.toISOString()} by ${first.assignedByEmail}, and cohorts never re-draw by themselves. To draw it again, ask for a redraw and say why: it is audited, and tenants already on shards keep their cohorts.`,
        );
      }
      const policy: TLadderPolicy = input.policy ?? defaultLadder(settings.cohortPercents);
      const before = await tx.cohortMember.findMany({
        where: { planId: input.planId },
        select: { tenantKey: true, ordinal: true },
      });
      // On a redraw, history stays: a tenant on its shard (or on its way) keeps the cohort it went with.
      const kept = new Map<string, number>();
      if (first) {
        const moving = await tenantsInMotion(tx, input.planId);
        const last = policy.steps.length;
        for (const m of before) {
          if (moving.has(m.tenantKey) && m.ordinal !== null) kept.set(m.tenantKey, Math.min(m.ordinal, last));
        }
      }
      const pins = [
        ...policy.pins.filter((p) => !kept.has(p.tenantKey)),
        ...[...kept].map(([tenantKey, ordinal]) => ({ tenantKey, ordinal })),
      ];
      let assignment: ReturnType<typeof assignCohorts>;
      try {
        assignment = assignCohorts({
          tenants: await tenantSizes(tx, input.planId),
          tags: await tagsOf(tx, input.planId),
          policy: { ...policy, pins },
        });
      } catch (error) {
        if (error instanceof AssignError)
          throw new AppError("BAD_REQUEST", error.message, { field: "policy" });
        throw error;
      }

      await tx.cohortMember.deleteMany({ where: { planId: input.planId } });
      await tx.cohort.deleteMany({ where: { planId: input.planId } });
      await tx.cohort.createMany({
        data: assignment.cohorts.map((c, i) => ({
          planId: input.planId,
          ordinal: c.ordinal,
          label: c.label,
          // The ladder's hold tags ride on every step: a tenant found later is held by the same tags.
          policy: { ...policy.steps[i], holdTags: policy.holdTags },
          assignedById: actor.id,
          assignedByEmail: actor.email,
        })),
      });
      const members = [...assignment.members].map(([tenantKey, m]) => ({
        planId: input.planId,
        tenantKey,
        ordinal: m.ordinal,
        source: kept.has(tenantKey) ? "pinned" : m.source,
        assignedByEmail: actor.email,
      }));
      for (let i = 0; i < members.length; i += 5_000) {
        await tx.cohortMember.createMany({ data: members.slice(i, i + 5_000) });
      }
      const previous = new Map(before.map((m) => [m.tenantKey, m.ordinal]));
      const moved = first
        ? [...assignment.members].filter(([t, m]) => previous.has(t) && previous.get(t) !== m.ordinal).length
        : 0;
      await appendAuditEvent(tx, {
        actor,
        action: first ? "cohorts.redraw" : "cohorts.draw",
        target: { type: "plan", id: input.planId },
        planId: input.planId,
        before: first ? ladderSummary(existing, before) : null,
        after: {
          holdTags: policy.holdTags,
          pins: policy.pins.length,
          keptOnTheirCohort: kept.size,
          cohorts: assignment.cohorts.map((c, i) => ({ ...c, policy: policy.steps[i] })),
          held: [...assignment.members.values()].filter((m) => m.ordinal === null).length,
          ...(first ? { tenantsMoved: moved } : {}),
          notes: assignment.notes,
        },
        reason: input.reason,
      });
    },
    { timeout: 60_000, maxWait: 10_000 },
  );
  return listCohorts(input.planId);
}

/** Moves one tenant to another cohort (its smallest), or holds it in none: an audited edit. */
export async function moveTenant(actor: Actor, input: TMoveTenantInput) {
  await db().$transaction(async (tx) => {
    const plan = await lockPlan(tx, input.planId);
    const cohorts = await tx.cohort.findMany({ where: { planId: input.planId }, select: { ordinal: true } });
    if (cohorts.length === 0) {
      throw new AppError(
        "PRECONDITION_FAILED",
        `The ladder of "${plan.name}" is not drawn yet: draw it, then move tenants.`,
      );
    }
    const last = Math.max(...cohorts.map((c) => c.ordinal));
    if (input.ordinal !== null && input.ordinal > last) {
      throw new AppError("BAD_REQUEST", `The ladder has cohorts 1 to ${last}: choose one of them.`, {
        field: "ordinal",
      });
    }
    const member = await tx.cohortMember.findUnique({
      where: { planId_tenantKey: { planId: input.planId, tenantKey: input.tenantKey } },
    });
    const counted = await tx.tenantCensus.count({
      where: { planId: input.planId, tenantKey: input.tenantKey },
    });
    if (!member && counted === 0) {
      throw new AppError(
        "NOT_FOUND",
        `The census has no tenant "${input.tenantKey}" in this plan: check the key.`,
        {
          field: "tenantKey",
        },
      );
    }
    if ((await tenantsInMotion(tx, input.planId)).has(input.tenantKey)) {
      throw new AppError(
        "PRECONDITION_FAILED",
        `Tenant "${input.tenantKey}" is on a shard or being cut over: its cohort is part of that promotion. Roll it back to legacy first, then move it.`,
      );
    }
    // A tenant the census found after the draw is in the last cohort until stored otherwise.
    const from = member ? member.ordinal : last;
    if (from === input.ordinal && member) return;
    const source: MemberSource = input.ordinal === null ? "held" : "moved";
    await tx.cohortMember.upsert({
      where: { planId_tenantKey: { planId: input.planId, tenantKey: input.tenantKey } },
      create: {
        planId: input.planId,
        tenantKey: input.tenantKey,
        ordinal: input.ordinal,
        source,
        assignedByEmail: actor.email,
      },
      update: { ordinal: input.ordinal, source, assignedByEmail: actor.email, assignedAt: new Date() },
    });
    await appendAuditEvent(tx, {
      actor,
      action: "cohorts.move",
      target: { type: "tenant", id: input.tenantKey },
      planId: input.planId,
      before: { cohort: from, source: member?.source ?? "new-tenant" },
      after: { cohort: input.ordinal, source },
      reason: input.reason,
    });
  });
  return listCohorts(input.planId, 0);
}

/** Adds and removes tags on tenants: one audited event with every changed tenant's before and after. */
export async function setTags(actor: Actor, input: TSetTagsInput) {
  const tenants = [...new Set(input.tenantKeys)];
  return db().$transaction(async (tx) => {
    await lockPlan(tx, input.planId);
    const before = await tagsOf(tx, input.planId, tenants);
    if (input.remove.length) {
      await tx.tenantTag.deleteMany({
        where: { planId: input.planId, tenantKey: { in: tenants }, tag: { in: input.remove } },
      });
    }
    if (input.add.length) {
      await tx.tenantTag.createMany({
        data: tenants.flatMap((tenantKey) =>
          input.add.map((tag) => ({
            planId: input.planId,
            tenantKey,
            tag,
            taggedById: actor.id,
            taggedByEmail: actor.email,
          })),
        ),
        skipDuplicates: true,
      });
    }
    const after = await tagsOf(tx, input.planId, tenants);
    const changed = tenants.filter((t) => (before.get(t) ?? []).join(",") !== (after.get(t) ?? []).join(","));
    if (changed.length > 0) {
      await appendAuditEvent(tx, {
        actor,
        action: "tenant.tags",
        target: { type: "tenant", id: changed.length === 1 ? changed[0] : null },
        planId: input.planId,
        before: Object.fromEntries(changed.map((t) => [t, before.get(t) ?? []])),
        after: Object.fromEntries(changed.map((t) => [t, after.get(t) ?? []])),
        reason: input.reason,
      });
    }
    return { changed: changed.length, tags: Object.fromEntries(tenants.map((t) => [t, after.get(t) ?? []])) };
  });
}

/**
 * Stores the tenants the census counts that the ladder never placed: each joins the last cohort
 * (held if tagged to be). Nobody else moves. For the engine after a census; returns how many.
 */
export async function placeCensusNewcomers(planId: string): Promise<number> {
  return db().$transaction(async (tx) => {
    await lockPlan(tx, planId);
    const cohorts = await tx.cohort.findMany({ where: { planId }, select: { ordinal: true } });
    if (cohorts.length === 0) return 0;
    const placed = await tx.cohortMember.findMany({ where: { planId }, select: { tenantKey: true } });
    const tenants = await tenantSizes(tx, planId);
    const added = placeNewTenants({
      tenants,
      placed: new Set(placed.map((p) => p.tenantKey)),
      tags: await tagsOf(tx, planId),
      holdTags: await holdTagsOf(tx, planId),
      lastOrdinal: Math.max(...cohorts.map((c) => c.ordinal)),
    });
    if (added.size === 0) return 0;
    await tx.cohortMember.createMany({
      data: [...added].map(([tenantKey, m]) => ({
        planId,
        tenantKey,
        ordinal: m.ordinal,
        source: m.source,
        assignedByEmail: "system",
      })),
      skipDuplicates: true,
    });
    await tx.engineEvent.create({
      data: {
        planId,
        level: "info",
        source: "cohorts",
        message: `${added.size} tenant${added.size === 1 ? "" : "s"} the census found after the ladder was drawn joined the last cohort (or were held by their tags); no other tenant moved.`,
      },
    });
    return added.size;
  });
}

/** The hold tags the ladder was drawn with (stored on its steps). */
async function holdTagsOf(tx: Tx, planId: string): Promise<string[]> {
  const first = await tx.cohort.findFirst({
    where: { planId },
    orderBy: { ordinal: "asc" },
    select: { policy: true },
  });
  const tags = (first?.policy as { holdTags?: unknown } | null)?.holdTags;
  return Array.isArray(tags)
    ? tags.filter((t): t is string => typeof t === "string")
    : [...DEFAULT_HOLD_TAGS];
}

export interface CohortTenant {
  tenant: string;
  rows: number;
  rowsCopied: number;
  tags: string[];
  state: TenantState;
  error: string | null;
  /** How it got its cohort; "new-tenant" with placed=false: found after the draw, not yet stored. */
  source: MemberSource;
  placed: boolean;
}

interface TenantRow {
  tenant_key: string;
  rows: number;
  copied: number;
  in_census: boolean;
  placed: boolean;
  ordinal: number | null;
  source: string | null;
  on_shard: boolean;
  direction: string | null;
  status: string | null;
  error: string | null;
  tags: string[];
}

const TENANT_FACTS_SQL = `${TENANT_ROWS_CTES},
members as (select tenant_key, ordinal, source from cohort_member where plan_id = $1::uuid),
-- Every tenant of the ladder, or ($2) just the ones asked about.
keys as (
  select tenant_key from tenants where $2::text[] is null
  union select tenant_key from members where $2::text[] is null
  union select unnest($2::text[])
),
latest as (
  select distinct on (tenant_key) tenant_key, direction, status, error
  from tenant_cutover where plan_id = $1::uuid order by tenant_key, created_at desc
),
tagged as (
  select tenant_key, array_agg(tag order by tag) as tags from tenant_tag where plan_id = $1::uuid group by tenant_key
)
select k.tenant_key, coalesce(t.rows, 0)::float8 as rows, coalesce(t.copied, 0)::float8 as copied,
       t.tenant_key is not null as in_census, m.tenant_key is not null as placed, m.ordinal, m.source,
       coalesce(r.owner_database_id is not null, false) as on_shard,
       l.direction, l.status, l.error, coalesce(g.tags, '{}') as tags
from keys k
left join tenants t on t.tenant_key = k.tenant_key
left join members m on m.tenant_key = k.tenant_key
left join tenant_route r on r.plan_id = $1::uuid and r.tenant_key = k.tenant_key
left join latest l on l.tenant_key = k.tenant_key
left join tagged g on g.tenant_key = k.tenant_key`;

function cohortTenant(r: TenantRow): CohortTenant {
  const derived = tenantState({
    copied: r.in_census && r.copied >= r.rows,
    onShard: r.on_shard,
    latestCutover:
      r.direction && r.status
        ? { direction: r.direction as CutoverDirection, status: r.status as CutoverStatus, error: r.error }
        : null,
  });
  return {
    tenant: r.tenant_key,
    rows: r.rows,
    rowsCopied: r.copied,
    tags: r.tags,
    state: derived.state,
    error: derived.error,
    source: (r.source ?? "new-tenant") as MemberSource,
    placed: r.placed,
  };
}

/**
 * One tenant as every page that shows it names it: its derived state (and error), tags, and cohort
 * (null: held, or no ladder drawn yet; a tenant the ladder never placed is in the last cohort).
 */
export async function tenantOverview(planId: string, tenantKey: string) {
  const [cohorts, rows] = await Promise.all([
    db().cohort.findMany({
      where: { planId },
      orderBy: { ordinal: "asc" },
      select: { ordinal: true, label: true },
    }),
    db().$queryRawUnsafe<TenantRow[]>(TENANT_FACTS_SQL, planId, [tenantKey]),
  ]);
  const row = rows[0];
  if (!row) throw new AppError("NOT_FOUND", `No tenant "${tenantKey}" in this plan.`);
  const tenant = cohortTenant(row);
  const last = cohorts.at(-1);
  const ordinal = cohorts.length === 0 ? null : row.placed ? row.ordinal : (last?.ordinal ?? null);
  return {
    ...tenant,
    /** Known to the census (rows counted on legacy). */
    counted: row.in_census,
    cohort: ordinal === null ? null : (cohorts.find((c) => c.ordinal === ordinal) ?? null),
    held: row.placed && row.ordinal === null,
  };
}

function emptyStates(): Record<TenantState, number> {
  return Object.fromEntries(TENANT_STATES.map((s) => [s, 0])) as Record<TenantState, number>;
}

/**
 * The plan's ladder: each cohort's policy, who drew it, its tenants (its own and nested), rows,
 * copied rows and tenants per state, with up to `limit` tenants listed (smallest first).
 */
export async function listCohorts(planId: string, limit = 100) {
  const cohorts = await db().cohort.findMany({ where: { planId }, orderBy: { ordinal: "asc" } });
  if (cohorts.length === 0) return { drawn: false as const, cohorts: [], held: null, unplaced: 0 };
  const rows = await db().$queryRawUnsafe<TenantRow[]>(TENANT_FACTS_SQL, planId, null);
  const last = cohorts.at(-1)?.ordinal ?? 1;
  const groups = new Map<number | null, CohortTenant[]>();
  let unplaced = 0;
  for (const r of rows) {
    const ordinal = r.placed ? r.ordinal : last;
    if (!r.placed) unplaced++;
    const tenant = cohortTenant(r);
    groups.set(ordinal, [...(groups.get(ordinal) ?? []), tenant]);
  }
  const summarise = (tenants: CohortTenant[]) => {
    const states = emptyStates();
    for (const t of tenants) states[t.state]++;
    const sorted = [...tenants].sort((a, b) => a.rows - b.rows || compareKeys(a.tenant, b.tenant));
    return {
      tenants: tenants.length,
      rows: tenants.reduce((n, t) => n + t.rows, 0),
      rowsCopied: tenants.reduce((n, t) => n + t.rowsCopied, 0),
      states,
      members: sorted.slice(0, limit),
    };
  };
  let cumulative = 0;
  return {
    drawn: true as const,
    drawnAt: cohorts[0]?.assignedAt ?? null,
    drawnBy: cohorts[0]?.assignedByEmail ?? null,
    cohorts: cohorts.map((c) => {
      const own = summarise(groups.get(c.ordinal) ?? []);
      cumulative += own.tenants;
      const policy = ZCohortStep.safeParse(c.policy);
      return {
        ordinal: c.ordinal,
        label: c.label,
        policy: policy.success ? policy.data : null,
        ...own,
        cumulativeTenants: cumulative,
      };
    }),
    held: summarise(groups.get(null) ?? []),
    unplaced,
  };
}

export type CohortsListing = Awaited<ReturnType<typeof listCohorts>>;

/** Which side a tenant's derived state puts it on, for the plan's overview. */
export function sideOf(state: TenantState): "legacy" | "cuttingOver" | "onShards" {
  if (state === "on_shard") return "onShards";
  if (state === "cutting_over" || state === "rolling_back") return "cuttingOver";
  return "legacy";
}

/**
 * Where the plan's tenants are now: tenants and their rows on legacy, cutting over (or rolling
 * back) and on shards, with up to `limit` tenants of each side listed (those cutting over first of
 * all: they are the live ones), largest first. One statement over the census, the routing map and
 * the latest attempts — the same facts every tenant state is derived from — so thousands of tenants
 * cost one scan, not a query each.
 */
export async function tenantPlacement(planId: string, limit = 20) {
  const rows = await db().$queryRawUnsafe<TenantRow[]>(TENANT_FACTS_SQL, planId, null);
  const sides = {
    legacy: { tenants: 0, rows: 0, listed: [] as CohortTenant[] },
    cuttingOver: { tenants: 0, rows: 0, listed: [] as CohortTenant[] },
    onShards: { tenants: 0, rows: 0, listed: [] as CohortTenant[] },
  };
  const all = rows.map(cohortTenant).sort((a, b) => b.rows - a.rows || compareKeys(a.tenant, b.tenant));
  for (const t of all) {
    const side = sides[sideOf(t.state)];
    side.tenants++;
    side.rows += t.rows;
    if (side.listed.length < limit) side.listed.push(t);
  }
  return { at: new Date(), total: all.length, ...sides };
}

export type TenantPlacement = Awaited<ReturnType<typeof tenantPlacement>>;
