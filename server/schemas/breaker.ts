// The rollback breaker's API inputs (docs/breaker.md). Shared by the API and the forms: browser-safe.
import { z } from "zod";
import { ZRequiredReason } from "./plan";
import { ZTenantKey } from "./routing";

/**
 * What a trip rolls back: named tenants, every tenant on one shard, every tenant on the shards, or
 * the tenants of one cohort of the ladder (its own members: the "Its tenants" column of the cohorts
 * page) — with `andLater`, of that cohort and every cohort after it. Only those on shards move.
 */
export const ZBreakerScope = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("tenants"),
    tenants: z
      .array(ZTenantKey)
      .min(1, "Name at least one tenant to roll back")
      .max(100_000, "At most 100,000 tenants in one trip: use the shard or all scope"),
  }),
  z.object({ kind: z.literal("shard"), databaseId: z.uuid("Choose one of the plan's shards") }),
  z.object({ kind: z.literal("all") }),
  z.object({
    kind: z.literal("cohort"),
    ordinal: z.number().int().min(1, "Choose one of the ladder's cohorts"),
    andLater: z.boolean().default(false),
  }),
]);
export type TBreakerScope = z.infer<typeof ZBreakerScope>;

export const ZBreakerPreviewInput = z.object({ planId: z.uuid(), scope: ZBreakerScope });
export type TBreakerPreviewInput = z.infer<typeof ZBreakerPreviewInput>;

export const ZBreakerTripInput = z.object({
  planId: z.uuid(),
  scope: ZBreakerScope,
  reason: ZRequiredReason,
});
export type TBreakerTripInput = z.infer<typeof ZBreakerTripInput>;

export const ZBreakerRearmInput = z.object({ planId: z.uuid(), reason: ZRequiredReason });
export type TBreakerRearmInput = z.infer<typeof ZBreakerRearmInput>;

export const ZBreakerHistoryInput = z.object({
  planId: z.uuid(),
  limit: z.number().int().min(1).max(200).default(20),
});
export type TBreakerHistoryInput = z.infer<typeof ZBreakerHistoryInput>;
