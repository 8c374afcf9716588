"use client";

import { useQuery } from "@tanstack/react-query";
import { useTRPC } from "@/components/providers/trpc";

export function usePlan(planId: string) {
  const trpc = useTRPC();
  return useQuery({ ...trpc.plans.byId.queryOptions({ planId }), refetchInterval: 10_000 });
}
