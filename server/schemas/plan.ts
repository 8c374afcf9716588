// Shared by the API and the forms: the browser imports this file, so it holds only zod and data.
import { z } from "zod";
import { ZRowVersion } from "./bounds";

export const PLAN_PHASES = [
  "define_key",
  "application_router",
  "two_way_cdc",
  "async_backfill",
  "bit_by_bit_routing",
  "automated_parity",
  "live_rollback",
  "native_cleanup",
  "complete",
] as const;
export type PlanPhase = (typeof PLAN_PHASES)[number];
export const ZPlanPhase = z.enum(PLAN_PHASES);

/** The DATA-BALANCE steps, in order, as the timeline shows them. */
export const PHASE_INFO: Record<PlanPhase, { letter: string; title: string; summary: string }> = {
  define_key: {
    letter: "D",
    title: "Define the key",
    summary: "Analyse the shard key, reference tables, id collisions and placement.",
  },
  application_router: {
    letter: "A",
    title: "Application router",
    summary: "Publish the versioned routing map; applications route through the SDK.",
  },
  two_way_cdc: {
    letter: "T",
    title: "Two-way CDC",
    summary: "Logical replication legacy → shards, and back for tenants that cut over.",
  },
  async_backfill: {
    letter: "A",
    title: "Asynchronous backfill",
    summary: "Chunked copy of historical rows with checkpoints, throttle and back-off.",
  },
  bit_by_bit_routing: {
    letter: "B",
    title: "Bit-by-bit routing",
    summary: "Promote tenant cohorts 1% → 5% → 25% → 100% as gates pass.",
  },
  automated_parity: {
    letter: "A",
    title: "Automated parity",
    summary: "In-database chunk hashes on both sides; drift located and repaired.",
  },
  live_rollback: {
    letter: "L",
    title: "Live rollback breaker",
    summary: "Soak with the breaker armed: one click moves tenants back to legacy.",
  },
  native_cleanup: {
    letter: "N",
    title: "Native clean-up",
    summary: "Stop reverse replication, drop slots and publications, final report.",
  },
  complete: { letter: "✓", title: "Complete", summary: "Migration finished; nothing left running." },
};

/** Each step a whole percentage above 0, strictly increasing, the last 100: "0, 100" promotes nobody first. */
const cohortPercents = z
  .array(
    z
      .number({ error: "Enter the steps as percentages, e.g. 1, 5, 25, 100" })
      .int("Use whole percentages, e.g. 1, 5, 25, 100")
      .min(1, "Each cohort step must be more than 0% (e.g. 1, 5, 25, 100)")
      .max(100, "A cohort step is at most 100%"),
  )
  .min(1, "Add at least one cohort step")
  .max(10, "At most 10 cohort steps")
  .refine((steps) => steps.every((p, i) => i === 0 || p > (steps[i - 1] ?? 0)), {
    message: "Each cohort step must be larger than the one before (e.g. 1, 5, 25, 100)",
  })
  .refine((steps) => steps.at(-1) === 100, { message: "The last cohort step must be 100%" });

export const ZPlanSettings = z.object({
  backfillRowsPerSecond: z
    .number({ error: "Enter a number of rows per second" })
    .int("Use a whole number")
    .min(100, "At least 100 rows/s")
    .max(1_000_000, "At most 1,000,000 rows/s"),
  parityRowsPerSecond: z
    .number({ error: "Enter a number of rows per second" })
    .int("Use a whole number")
    .min(1_000, "At least 1,000 rows/s")
    .max(10_000_000, "At most 10,000,000 rows/s")
    .default(200_000),
  cdcLagThresholdMs: z
    .number({ error: "Enter a lag in milliseconds" })
    .int("Use a whole number")
    .min(100, "At least 100 ms")
    .max(600_000, "At most 600,000 ms (10 min)"),
  gateSoakMinutes: z
    .number({ error: "Enter a soak time in minutes" })
    .int("Use a whole number")
    .min(0, "Cannot be negative")
    .max(10_080, "At most 10,080 min (7 days)"),
  requireCleanParity: z.boolean(),
  freezeBudgetMs: z
    .number({ error: "Enter a freeze budget in milliseconds" })
    .int("Use a whole number")
    .min(100, "At least 100 ms")
    .max(10_000, "At most 10,000 ms: longer freezes are outages"),
  soakDays: z
    .number({ error: "Enter a number of days" })
    .int("Use a whole number")
    .min(7, "Soak at least 7 days before clean-up")
    .max(90, "At most 90 days"),
  cohortPercents,
  slotRetainedWarnMb: z
    .number({ error: "Enter a size in MB" })
    .int("Use a whole number")
    .min(1, "At least 1 MB")
    .max(1_048_576, "At most 1,048,576 MB (1 TiB)")
    .default(1_024),
  sourceBusyConnections: z
    .number({ error: "Enter a number of connections" })
    .int("Use a whole number")
    .min(1, "At least 1 connection")
    .max(100_000, "At most 100,000 connections")
    .default(64),
  sourceLoadQuery: z
    .string()
    .trim()
    .max(2_000, "Keep the load query under 2,000 characters")
    .refine((q) => q === "" || /^(select|with|values|table)\b/i.test(q), {
      message:
        "A load query reads: start it with SELECT or WITH (e.g. select count(*) from pg_locks where not granted)",
    })
    .default(""),
  sourceLoadThreshold: z
    .number({ error: "Enter the value above which the backfill backs off" })
    .finite("Enter a finite number")
    .min(-1e15, "At least -1,000,000,000,000,000")
    .max(1e15, "At most 1,000,000,000,000,000")
    .default(0),
  // Cohort gates (server/engine/gates/cohort-gates.ts) read cdcLagThresholdMs, gateSoakMinutes and
  // requireCleanParity above, over this window:
  gateWindowMinutes: z
    .number({ error: "Enter a window in minutes" })
    .int("Use a whole number")
    .min(1, "At least 1 min")
    .max(1_440, "At most 1,440 min (a day)")
    .default(5),
  // A promotion's cutovers in flight at once (server/engine/promotion/).
  promotionConcurrency: z
    .number({ error: "Enter a number of tenants" })
    .int("Use a whole number")
    .min(1, "At least 1 tenant at a time")
    .max(64, "At most 64 tenants at a time")
    .default(8),
  // The breaker's automatic trip rules (server/engine/gates/trip-rules.ts).
  breakerParityDriftRows: z
    .number({ error: "Enter a number of rows" })
    .int("Use a whole number")
    .min(0, "Cannot be negative (0 trips on any confirmed difference)")
    .max(1_000_000, "At most 1,000,000 rows")
    .default(0),
  breakerLagThresholdMs: z
    .number({ error: "Enter a lag in milliseconds" })
    .int("Use a whole number")
    .min(1_000, "At least 1,000 ms")
    .max(3_600_000, "At most 3,600,000 ms (an hour)")
    .default(30_000),
  breakerWindowSeconds: z
    .number({ error: "Enter a window in seconds" })
    .int("Use a whole number")
    .min(10, "At least 10 s: shorter windows trip on a single slow sample")
    .max(3_600, "At most 3,600 s (an hour)")
    .default(60),
  breakerShardDownSeconds: z
    .number({ error: "Enter a time in seconds" })
    .int("Use a whole number")
    .min(5, "At least 5 s")
    .max(3_600, "At most 3,600 s (an hour)")
    .default(30),
  breakerStrayWrites: z
    .number({ error: "Enter a number of writes" })
    .int("Use a whole number")
    .min(0, "Cannot be negative (0 trips on any stray write)")
    .max(1_000_000, "At most 1,000,000 writes")
    .default(0),
  breakerSdkErrorPercent: z
    .number({ error: "Enter a percentage" })
    .int("Use a whole percentage")
    .min(1, "At least 1%")
    .max(100, "At most 100%")
    .default(5),
});
export type TPlanSettings = z.infer<typeof ZPlanSettings>;

export const DEFAULT_PLAN_SETTINGS: TPlanSettings = {
  backfillRowsPerSecond: 20_000,
  parityRowsPerSecond: 200_000,
  cdcLagThresholdMs: 5_000,
  gateSoakMinutes: 30,
  requireCleanParity: true,
  freezeBudgetMs: 2_000,
  soakDays: 14,
  cohortPercents: [1, 5, 25, 100],
  slotRetainedWarnMb: 1_024,
  sourceBusyConnections: 64,
  sourceLoadQuery: "",
  sourceLoadThreshold: 0,
  gateWindowMinutes: 5,
  promotionConcurrency: 8,
  breakerParityDriftRows: 0,
  breakerLagThresholdMs: 30_000,
  breakerWindowSeconds: 60,
  breakerShardDownSeconds: 30,
  breakerStrayWrites: 0,
  breakerSdkErrorPercent: 5,
};

export const ZPlanName = z
  .string()
  .trim()
  .min(3, "Name must be at least 3 characters")
  .max(64, "Name must be at most 64 characters")
  .regex(/^[\p{L}\p{N}][\p{L}\p{N} _.-]*$/u, "Use letters, digits, spaces, dots, dashes and underscores");

export const ZIdentifier = z
  .string()
  .trim()
  .min(1, "Enter a column name")
  .max(63, "PostgreSQL identifiers are at most 63 characters")
  .regex(/^[a-z_][a-z0-9_$]*$/, "Use a lower-case column name such as tenant_id");

export const ZReason = z.string().trim().max(500, "Keep the reason under 500 characters");
export const ZRequiredReason = ZReason.min(3, "Say why (at least 3 characters): it goes into the audit log");

export const ZCreatePlanInput = z
  .object({
    name: ZPlanName,
    sourceDatabaseId: z.uuid("Choose the legacy database"),
    shardDatabaseIds: z
      .array(z.uuid())
      .min(1, "Choose at least one shard")
      .max(64, "At most 64 shards")
      .refine((ids) => new Set(ids).size === ids.length, { message: "Each shard can be chosen once" }),
    shardKeyColumn: ZIdentifier,
    settings: ZPlanSettings.optional(),
  })
  .refine((input) => !input.shardDatabaseIds.includes(input.sourceDatabaseId), {
    message: "The legacy database cannot also be a shard",
    path: ["shardDatabaseIds"],
  });
export type TCreatePlanInput = z.infer<typeof ZCreatePlanInput>;

export const ZUpdatePlanSettingsInput = z.object({
  planId: z.uuid(),
  /** The plan version the form was filled from: a stale form is refused, not merged. */
  expectedVersion: ZRowVersion,
  settings: ZPlanSettings,
  reason: ZReason.optional(),
});
export type TUpdatePlanSettingsInput = z.infer<typeof ZUpdatePlanSettingsInput>;

export const ZPlanTransitionInput = z.object({
  planId: z.uuid(),
  expectedVersion: ZRowVersion,
  event: z.enum(["advance", "revert", "archive"]),
  reason: ZRequiredReason,
});
export type TPlanTransitionInput = z.infer<typeof ZPlanTransitionInput>;

export const ZPlanIdInput = z.object({
  planId: z.uuid("Not a plan id: plan ids are UUIDs (3f2b8c1e-…). Check the link."),
});
