import {
  ZBreakerHistoryInput,
  ZBreakerPreviewInput,
  ZBreakerRearmInput,
  ZBreakerTripInput,
} from "../../schemas/breaker";
import { breakerHistory, previewBreaker, rearmBreaker, tripBreaker } from "../../services/breaker/breaker";
import { adminProcedure, operatorProcedure, router, viewerProcedure } from "../init";

// Operators and admins trip; only admins re-arm (a deliberate step back to promoting); viewers see.
export const breakerRouter = router({
  preview: viewerProcedure.input(ZBreakerPreviewInput).query(({ input }) => previewBreaker(input)),
  trip: operatorProcedure
    .input(ZBreakerTripInput)
    .mutation(({ ctx, input }) => tripBreaker(ctx.actor, input)),
  rearm: adminProcedure
    .input(ZBreakerRearmInput)
    .mutation(({ ctx, input }) => rearmBreaker(ctx.actor, input)),
  history: viewerProcedure.input(ZBreakerHistoryInput).query(({ input }) => breakerHistory(input)),
});
