import { z } from "zod";
import { ZBigintId } from "./bounds";

const reason = z
  .string()
  .trim()
  .min(3, "Say why (at least 3 characters): it goes into the audit log")
  .max(500);

export const ZParityStatusInput = z.object({
  planId: z.uuid(),
  minutes: z
    .number()
    .int()
    .min(1)
    .max(7 * 24 * 60)
    .default(60),
});

export const ZRequestParityCheckInput = z.object({
  planId: z.uuid(),
  kind: z.enum(["full", "recent"]).default("full"),
});

export const ZRepairInput = z.discriminatedUnion("scope", [
  z.object({ scope: z.literal("row"), planId: z.uuid(), mismatchId: ZBigintId("The mismatch id"), reason }),
  z.object({ scope: z.literal("table"), planId: z.uuid(), table: z.string().min(1).max(200), reason }),
  z.object({ scope: z.literal("tenant"), planId: z.uuid(), tenant: z.string().min(1).max(200), reason }),
]);
export type TRepairInput = z.infer<typeof ZRepairInput>;

export const ZTenantParityInput = z.object({
  planId: z.uuid(),
  tenant: z.string().trim().min(1, "Enter a tenant key").max(200),
});
