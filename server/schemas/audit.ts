import { z } from "zod";
import { ZBigintId } from "./bounds";

export const ZAuditFilter = z
  .object({
    actorEmail: z.string().trim().max(200).optional(),
    action: z.string().trim().max(100).optional(),
    planId: z.uuid("Not a plan id").optional(),
    from: z.coerce.date({ error: "Not a date" }).optional(),
    to: z.coerce.date({ error: "Not a date" }).optional(),
  })
  .refine((f) => !f.from || !f.to || f.from <= f.to, { message: "'From' must be before 'to'", path: ["to"] });
export type TAuditFilter = z.infer<typeof ZAuditFilter>;

export const ZAuditListInput = z.object({
  filter: ZAuditFilter.default({}),
  /** The page after the last one shown: events past this seq (exclusive) in the list's order. */
  cursor: ZBigintId("The cursor").optional(),
  limit: z.number().int().min(1).max(200).default(50),
  /** Newest first (default), or oldest first: the log's only orders (seq follows time). */
  order: z.enum(["newest", "oldest"]).optional(),
});
export type TAuditListInput = z.infer<typeof ZAuditListInput>;
