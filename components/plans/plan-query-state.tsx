"use client";

import { QueryState } from "@/components/ui/query-state";
import { NoSuchPlan } from "./no-such-plan";

/** The plan's loading and error states: an unknown plan says so at once, not as a load failure. */
export function PlanQueryState({
  planId,
  isLoading,
  error,
}: {
  planId: string;
  isLoading: boolean;
  error: unknown;
}) {
  const code = (error as { data?: { code?: string } } | null)?.data?.code;
  if (code === "NOT_FOUND") return <NoSuchPlan planId={planId} />;
  if (code === "BAD_REQUEST") return <NoSuchPlan planId={planId} malformed />;
  return <QueryState isLoading={isLoading} error={error} what="the plan" />;
}
