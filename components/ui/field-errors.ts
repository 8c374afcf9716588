// One shape for field errors, whether zod found them in the browser or the server sent them back.
import { type FieldErrors, zodFieldErrors } from "@/server/schemas/field-errors";

export type { FieldErrors };
export const fieldErrorsFromZod = zodFieldErrors;

/** Field errors from a tRPC error (see the error formatter in server/trpc/init.ts). */
export function fieldErrorsFromServer(error: unknown): FieldErrors {
  const data = (error as { data?: { fieldErrors?: FieldErrors | null } } | null)?.data;
  return data?.fieldErrors ?? {};
}

export function messageOf(error: unknown): string {
  if (!error) return "";
  const message = (error as { message?: string }).message ?? String(error);
  return message;
}
