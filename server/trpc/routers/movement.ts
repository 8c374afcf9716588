import {
  ZCohortProgressInput,
  ZControlMovementInput,
  ZMovementStatusInput,
  ZSetRateInput,
  ZStartMovementInput,
} from "../../schemas/movement";
import { getCohortProgress } from "../../services/movement/cohort-progress";
import {
  controlDataMovement,
  getMovementStatus,
  setBackfillRate,
  startDataMovement,
} from "../../services/movement/movement";
import { operatorProcedure, router, viewerProcedure } from "../init";

export const movementRouter = router({
  status: viewerProcedure
    .input(ZMovementStatusInput)
    .query(({ input }) => getMovementStatus(input.planId, input.minutes)),
  cohorts: viewerProcedure.input(ZCohortProgressInput).query(({ input }) => getCohortProgress(input.planId)),
  start: operatorProcedure
    .input(ZStartMovementInput)
    .mutation(({ ctx, input }) => startDataMovement(ctx.actor, input)),
  control: operatorProcedure
    .input(ZControlMovementInput)
    .mutation(({ ctx, input }) => controlDataMovement(ctx.actor, input)),
  setRate: operatorProcedure
    .input(ZSetRateInput)
    .mutation(({ ctx, input }) => setBackfillRate(ctx.actor, input)),
});
