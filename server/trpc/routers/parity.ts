import {
  ZParityStatusInput,
  ZRepairInput,
  ZRequestParityCheckInput,
  ZTenantParityInput,
} from "../../schemas/parity";
import { getParityStatus, repair, requestParityCheck, tenantParity } from "../../services/parity/parity";
import { operatorProcedure, router, viewerProcedure } from "../init";

export const parityRouter = router({
  status: viewerProcedure
    .input(ZParityStatusInput)
    .query(({ input }) => getParityStatus(input.planId, input.minutes)),
  tenant: viewerProcedure
    .input(ZTenantParityInput)
    .query(({ input }) => tenantParity(input.planId, input.tenant)),
  check: operatorProcedure
    .input(ZRequestParityCheckInput)
    .mutation(({ ctx, input }) => requestParityCheck(ctx.actor, input)),
  repair: operatorProcedure.input(ZRepairInput).mutation(({ ctx, input }) => repair(ctx.actor, input)),
});
