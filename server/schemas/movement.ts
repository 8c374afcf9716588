import { z } from "zod";

export const ZStartMovementInput = z.object({
  planId: z.uuid(),
  /** Empty the plan's tables on every shard first (rows left by an earlier, cancelled movement). */
  resetShards: z.boolean().default(false),
  reason: z.string().trim().min(3, "Say why (at least 3 characters): it goes into the audit log").max(500),
});

export const ZControlMovementInput = z.object({
  planId: z.uuid(),
  action: z.enum(["pause", "resume", "cancel"]),
  reason: z.string().trim().min(3, "Say why (at least 3 characters): it goes into the audit log").max(500),
});
export type TControlMovementInput = z.infer<typeof ZControlMovementInput>;

export const ZSetRateInput = z.object({
  planId: z.uuid(),
  rowsPerSecond: z
    .number({ error: "Enter a number of rows per second" })
    .int("Use a whole number")
    .min(100, "At least 100 rows/s")
    .max(1_000_000, "At most 1,000,000 rows/s"),
  reason: z.string().trim().min(3, "Say why (at least 3 characters): it goes into the audit log").max(500),
});
export type TSetRateInput = z.infer<typeof ZSetRateInput>;

export const ZMovementStatusInput = z.object({
  planId: z.uuid(),
  /** Chart window. */
  minutes: z
    .number()
    .int()
    .min(1)
    .max(24 * 60)
    .default(15),
});

export const ZCohortProgressInput = z.object({ planId: z.uuid() });
