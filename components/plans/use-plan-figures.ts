"use client";

import { useQuery } from "@tanstack/react-query";
import { useTRPC } from "@/components/providers/trpc";

/**
 * A plan's live figures. Every component of a page calls this with the same key, so the header and
 * the cards read one cached answer and can never show two different values for one figure.
 */
export function usePlanFigures(planId: string) {
  const trpc = useTRPC();
  return useQuery({ ...trpc.figures.plan.queryOptions({ planId }), refetchInterval: 2_000 });
}

/** The chart markers of a plan's window (pause, resume, rate changes, …). */
export function useChartMarkers(planId: string, minutes: number) {
  const trpc = useTRPC();
  return useQuery({ ...trpc.figures.markers.queryOptions({ planId, minutes }), refetchInterval: 10_000 });
}
