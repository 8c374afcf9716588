import { z } from "zod";

export const ZPlanFiguresInput = z.object({ planId: z.uuid("Not a plan id") });

export const ZFleetInput = z
  .object({ includeArchived: z.boolean().default(false) })
  .default({ includeArchived: false });

export const ZChartMarkersInput = z.object({
  planId: z.uuid("Not a plan id"),
  /** The chart window. */
  minutes: z
    .number()
    .int()
    .min(1)
    .max(7 * 24 * 60)
    .default(60),
});

/** The lag chart's window: the same shape as the markers drawn on it. */
export const ZLagSeriesInput = ZChartMarkersInput;
