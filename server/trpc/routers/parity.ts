import { ZParityStatusInput, ZRepairInput, ZRequestParityCheckInput } from "../../schemas/parity";
import { getParityStatus, repair, requestParityCheck } from "../../services/parity/parity";
import { operatorProcedure, router, viewerProcedure } from "../init";

export const parityRouter = router({
  status: viewerProcedure
    .input(ZParityStatusInput)
    .query(({ input }) => getParityStatus(input.planId, input.minutes)),
  check: operatorProcedure
    .input(ZRequestParityCheckInput)
    .mutation(({ ctx, input }) => requestParityCheck(ctx.actor, input)),
  repair: operatorProcedure.input(ZRepairInput).mutation(({ ctx, input }) => repair(ctx.actor, input)),
});
