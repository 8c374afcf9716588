import type { ZodError } from "zod";

/** Field path ("settings.soakDays") → messages: one shape for forms, whichever side validated. */
export type FieldErrors = Record<string, string[]>;

export function zodFieldErrors(error: ZodError): FieldErrors {
  const out: FieldErrors = {};
  for (const issue of error.issues) {
    // A list is one input ("1, 5, 25, 100"): an issue with one of its items belongs to the list's
    // field, or the form would show it nowhere.
    const path = [...issue.path];
    while (typeof path.at(-1) === "number") path.pop();
    const key = path.join(".") || "_form";
    if (!out[key]?.includes(issue.message)) out[key] = [...(out[key] ?? []), issue.message];
  }
  return out;
}
