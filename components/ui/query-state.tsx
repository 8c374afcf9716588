"use client";

import { Alert } from "./alert";

/** Loading and error states, said the same way everywhere. */
export function QueryState({ isLoading, error, what }: { isLoading: boolean; error: unknown; what: string }) {
  if (error) {
    const message = (error as { message?: string }).message ?? String(error);
    return (
      <Alert tone="error" title={`Could not load ${what}`}>
        {message}
      </Alert>
    );
  }
  if (isLoading) {
    return (
      <p role="status" className="py-6 text-center text-sm text-slate-500">
        Loading {what}…
      </p>
    );
  }
  return null;
}
