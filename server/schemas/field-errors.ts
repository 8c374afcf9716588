import type { ZodError } from "zod";

/** Field path ("settings.soakDays") → messages: one shape for forms, whichever side validated. */
export type FieldErrors = Record<string, string[]>;

export function zodFieldErrors(error: ZodError): FieldErrors {
  const out: FieldErrors = {};
  for (const issue of error.issues) {
    const key = issue.path.join(".") || "_form";
    out[key] = [...(out[key] ?? []), issue.message];
  }
  return out;
}
