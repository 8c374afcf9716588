// Cohort ladders, tenant tags and cohort edits. Shared by the API and the forms: browser-safe.
import { z } from "zod";
import { ZRequiredReason } from "./plan";
import { ZTenantKey } from "./routing";

/** A tenant tag: lower-case word, e.g. vip, do-not-move, eu-region. */
export const ZTag = z
  .string({ error: "Enter a tag, e.g. vip" })
  .trim()
  .min(1, "Enter a tag, e.g. vip")
  .max(40, "A tag is at most 40 characters")
  .regex(/^[a-z0-9][a-z0-9_-]*$/, "Use lower-case letters, digits, - and _ (e.g. vip, do-not-move)");

const ZTags = z.array(ZTag).max(20, "At most 20 tags").default([]);

/** Tags that keep a tenant in no cohort at all (held on legacy) unless an operator moves it. */
export const DEFAULT_HOLD_TAGS = ["do-not-move"] as const;
/** Tags the first (canary) cohort of the default ladder leaves out. */
export const DEFAULT_CANARY_EXCLUDE_TAGS = ["vip"] as const;

/**
 * One step of the ladder. Sizes are cumulative (the 5% step holds 5% of the tenants, the 1% among
 * them); a list step holds exactly the tenants it names (and the earlier steps').
 */
export const ZCohortStep = z
  .object({
    label: z.string().trim().max(40, "Keep the label under 40 characters").optional(),
    kind: z.enum(["percent", "count", "list"]),
    /** percent: 1–100 of the tenants; count: a number of tenants. Ignored for a list. */
    value: z.number().int("Use a whole number").min(1, "At least 1").max(10_000_000).optional(),
    /** list: the tenants of this step. */
    tenants: z.array(ZTenantKey).max(10_000, "At most 10,000 tenants in a list step").optional(),
    /** Which tenants fill a percent or count step first, by their rows in the census. */
    order: z.enum(["smallest", "largest"]).default("smallest"),
    /** Only tenants with at least one of these tags (none: any tenant). */
    includeTags: ZTags,
    /** No tenant with any of these tags. */
    excludeTags: ZTags,
  })
  .refine((s) => s.kind === "list" || s.value !== undefined, {
    message: "Give the step's size: a percentage or a number of tenants",
    path: ["value"],
  })
  .refine((s) => s.kind !== "percent" || (s.value ?? 0) <= 100, {
    message: "A percentage step is at most 100%",
    path: ["value"],
  })
  .refine((s) => s.kind !== "list" || (s.tenants?.length ?? 0) > 0, {
    message: "Name the tenants of a list step",
    path: ["tenants"],
  });
export type TCohortStep = z.infer<typeof ZCohortStep>;

export const ZCohortPin = z.object({ tenantKey: ZTenantKey, ordinal: z.number().int().min(1).max(10) });

export const ZLadderPolicy = z
  .object({
    steps: z.array(ZCohortStep).min(1, "Add at least one cohort step").max(10, "At most 10 cohort steps"),
    /** Tenants tagged with any of these are in no cohort (held on legacy). */
    holdTags: z
      .array(ZTag)
      .max(20)
      .default([...DEFAULT_HOLD_TAGS]),
    /** Tenants put into a given cohort whatever their size (pins win over the steps' filters). */
    pins: z.array(ZCohortPin).max(10_000, "At most 10,000 pins").default([]),
  })
  .refine(
    (p) => {
      const last = p.steps.at(-1);
      return (
        last?.kind === "percent" && last.value === 100 && !last.includeTags.length && !last.excludeTags.length
      );
    },
    {
      message:
        "The last step must be 100% with no tag filter: every tenant ends up in a cohort (hold tenants back with a hold tag such as do-not-move instead)",
      path: ["steps"],
    },
  )
  .refine(
    (p) => {
      const percents = p.steps.flatMap((s) => (s.kind === "percent" ? [s.value ?? 0] : []));
      return percents.every((v, i) => i === 0 || v > (percents[i - 1] ?? 0));
    },
    {
      message: "Each percentage step must be larger than the one before (e.g. 1, 5, 25, 100)",
      path: ["steps"],
    },
  )
  .refine((p) => p.pins.every((pin) => pin.ordinal <= p.steps.length), {
    message: "A pin names a cohort the ladder does not have",
    path: ["pins"],
  })
  .refine((p) => new Set(p.pins.map((pin) => pin.tenantKey)).size === p.pins.length, {
    message: "Pin each tenant once",
    path: ["pins"],
  });
export type TLadderPolicy = z.infer<typeof ZLadderPolicy>;

/** The default: 1% smallest first without VIPs, then the plan's other steps, smallest first. */
export function defaultLadder(cohortPercents: readonly number[]): TLadderPolicy {
  return {
    steps: cohortPercents.map((value, i) => ({
      label: `${value}%`,
      kind: "percent" as const,
      value,
      order: "smallest" as const,
      includeTags: [],
      excludeTags: i === 0 && cohortPercents.length > 1 ? [...DEFAULT_CANARY_EXCLUDE_TAGS] : [],
    })),
    holdTags: [...DEFAULT_HOLD_TAGS],
    pins: [],
  };
}

export const ZCohortsInput = z.object({
  planId: z.uuid(),
  /** Members shown per cohort (the counts are always complete). */
  limit: z.number().int().min(0).max(1_000).default(100),
});

export const ZTenantPlacementInput = z.object({
  planId: z.uuid(),
  /** Tenants listed per side, largest first (the counts are always complete). */
  limit: z.number().int().min(0).max(200).default(20),
});

export const ZDrawLadderInput = z
  .object({
    planId: z.uuid(),
    /** Absent: the default ladder from the plan's cohort steps. */
    policy: ZLadderPolicy.optional(),
    /** A ladder is drawn once; drawing again must say so, and why. */
    redraw: z.boolean().default(false),
    reason: z.string().trim().max(500, "Keep the reason under 500 characters").optional(),
  })
  .refine((i) => !i.redraw || (i.reason?.length ?? 0) >= 3, {
    message: "Say why the ladder is drawn again (at least 3 characters): it goes into the audit log",
    path: ["reason"],
  });
export type TDrawLadderInput = z.infer<typeof ZDrawLadderInput>;

export const ZMoveTenantInput = z.object({
  planId: z.uuid(),
  tenantKey: ZTenantKey,
  /** The cohort it joins (its smallest), or null to hold it on legacy in no cohort. */
  ordinal: z.number().int().min(1).max(10).nullable(),
  reason: ZRequiredReason,
});
export type TMoveTenantInput = z.infer<typeof ZMoveTenantInput>;

export const ZSetTagsInput = z
  .object({
    planId: z.uuid(),
    tenantKeys: z
      .array(ZTenantKey)
      .min(1, "Name at least one tenant")
      .max(1_000, "At most 1,000 tenants at once"),
    add: z.array(ZTag).max(20).default([]),
    remove: z.array(ZTag).max(20).default([]),
    reason: z.string().trim().max(500, "Keep the reason under 500 characters").optional(),
  })
  .refine((i) => i.add.length + i.remove.length > 0, {
    message: "Add or remove at least one tag",
    path: ["add"],
  })
  .refine((i) => !i.add.some((t) => i.remove.includes(t)), {
    message: "A tag cannot be added and removed at once",
    path: ["remove"],
  });
export type TSetTagsInput = z.infer<typeof ZSetTagsInput>;

export const ZTenantOverviewInput = z.object({ planId: z.uuid(), tenantKey: ZTenantKey });
export const ZGatesInput = z.object({ planId: z.uuid(), ordinal: z.number().int().min(1).max(10) });
export const ZTripRulesInput = z.object({ planId: z.uuid() });

export const ZPromotePreviewInput = z.object({
  planId: z.uuid(),
  ordinal: z.number().int().min(1).max(10),
});
export type TPromotePreviewInput = z.infer<typeof ZPromotePreviewInput>;

export const ZPromoteInput = z.object({
  planId: z.uuid(),
  ordinal: z.number().int().min(1).max(10),
  reason: ZRequiredReason,
  /**
   * Admins only: promote although a gate does not pass (e.g. the soak cut short on purpose). The
   * reason is audited with every gate's judgement.
   */
  overrideReason: ZRequiredReason.optional(),
});
export type TPromoteInput = z.infer<typeof ZPromoteInput>;

export const ZPromotionControlInput = z.object({
  promotionId: z.uuid(),
  reason: ZRequiredReason,
});
export type TPromotionControlInput = z.infer<typeof ZPromotionControlInput>;

export const ZPromotionsInput = z.object({
  planId: z.uuid(),
  /** One promotion with every tenant; absent: the plan's newest ones, each with its tenants. */
  promotionId: z.uuid().optional(),
  limit: z.number().int().min(1).max(50).default(10),
});
export type TPromotionsInput = z.infer<typeof ZPromotionsInput>;

export const ZRetryTenantInput = z.object({
  promotionId: z.uuid(),
  tenantKey: ZTenantKey,
  reason: ZRequiredReason,
});
export type TRetryTenantInput = z.infer<typeof ZRetryTenantInput>;
