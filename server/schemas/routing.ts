// Routing map, API tokens and the HTTP map query. Shared by the API and the forms: browser-safe.
import { z } from "zod";
import { ZReason, ZRequiredReason } from "./plan";

/** A tenant key as its text (the shard key's text form, e.g. "42"): printable, bounded. */
export const ZTenantKey = z
  .string({ error: "Enter a tenant key, e.g. 42" })
  .trim()
  .min(1, "Enter a tenant key, e.g. 42")
  .max(200, "A tenant key is at most 200 characters")
  .regex(/^[^\p{Cc}]*$/u, "A tenant key cannot contain control characters");

export const ZRoutingSummaryInput = z.object({ planId: z.uuid() });
export const ZTenantLookupInput = z.object({ planId: z.uuid(), tenantKey: ZTenantKey });

/** "legacy" or a shard's database id. */
export const ZRouteOwner = z.union([
  z.literal("legacy"),
  z.uuid({ error: 'An owner is "legacy" or a shard\'s database id' }),
]);

export const ZRouteChange = z
  .object({
    tenantKey: ZTenantKey,
    owner: ZRouteOwner.optional(),
    frozen: z.boolean().optional(),
  })
  .refine((c) => c.owner !== undefined || c.frozen !== undefined, {
    message: "Say what changes for the tenant: its owner, its freeze, or both",
  });

export const ZChangeRoutesInput = z.object({
  planId: z.uuid(),
  changes: z
    .array(ZRouteChange)
    .min(1, "Name at least one tenant")
    .max(10_000, "At most 10,000 tenants per change"),
  expectedVersion: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  reason: ZRequiredReason,
});
export type TChangeRoutesInput = z.infer<typeof ZChangeRoutesInput>;

export const ZInstallFencesInput = z.object({ planId: z.uuid(), reason: ZRequiredReason });

export const ZApiTokenName = z
  .string({ error: "Name the token after the application that uses it" })
  .trim()
  .min(2, "Name the token after the application that uses it (at least 2 characters)")
  .max(100, "Keep the name under 100 characters")
  .regex(/^[^\p{Cc}]*$/u, "A name cannot contain control characters");

export const ZCreateApiTokenInput = z.object({
  planId: z.uuid(),
  name: ZApiTokenName,
  reason: ZReason.optional(),
});
export const ZRevokeApiTokenInput = z.object({ tokenId: z.uuid(), reason: ZRequiredReason });
export const ZListApiTokensInput = z.object({ planId: z.uuid() });

/** The longest a router may hold a long-poll open (seconds). */
export const MAX_MAP_WAIT_SECONDS = 60;

/** GET /api/routing/map?since=&wait= */
export const ZRoutingMapQuery = z.object({
  since: z.coerce
    .number({ error: "since must be a map version (a whole number ≥ 0)" })
    .int("since must be a map version (a whole number ≥ 0)")
    .min(0, "since must be a map version (a whole number ≥ 0)")
    .max(Number.MAX_SAFE_INTEGER)
    .optional(),
  wait: z.coerce
    .number({ error: `wait must be a number of seconds (0–${MAX_MAP_WAIT_SECONDS})` })
    .min(0, `wait must be a number of seconds (0–${MAX_MAP_WAIT_SECONDS})`)
    .max(MAX_MAP_WAIT_SECONDS, `wait is at most ${MAX_MAP_WAIT_SECONDS} seconds`)
    .default(0),
});

// ---- Cutover of one tenant (docs/cutover.md) ----

export const ZCutoverDirection = z.enum(["to-shard", "to-legacy"], {
  error: 'A direction is "to-shard" or "to-legacy"',
});

/** How long a cutover may hold the tenant's writes; the plan's freeze budget when omitted. */
export const ZFreezeBudgetMs = z
  .number({ error: "Enter a freeze budget in milliseconds" })
  .int("Use a whole number")
  .min(100, "At least 100 ms")
  .max(10_000, "At most 10,000 ms: longer freezes are outages");

export const ZCutoverPreviewInput = z.object({ planId: z.uuid(), tenantKey: ZTenantKey });

export const ZRequestCutoverInput = z.object({
  planId: z.uuid(),
  tenantKey: ZTenantKey,
  reason: ZRequiredReason,
  budgetMs: ZFreezeBudgetMs.optional(),
  /** Derived from the tenant's current owner when omitted (legacy → its shard, a shard → legacy). */
  direction: ZCutoverDirection.optional(),
});
export type TRequestCutoverInput = z.infer<typeof ZRequestCutoverInput>;

export const ZListCutoversInput = z.object({
  planId: z.uuid(),
  tenantKey: ZTenantKey.optional(),
  limit: z.number().int().min(1).max(500).default(50),
  /** By request time: the newest attempts (default) or the first ones. */
  order: z.enum(["newest", "oldest"]).optional(),
});
export type TListCutoversInput = z.infer<typeof ZListCutoversInput>;
