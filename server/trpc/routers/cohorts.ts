import {
  ZCohortsInput,
  ZDrawLadderInput,
  ZGatesInput,
  ZMoveTenantInput,
  ZSetTagsInput,
  ZTenantOverviewInput,
  ZTripRulesInput,
} from "../../schemas/cohorts";
import { drawLadder, listCohorts, moveTenant, setTags, tenantOverview } from "../../services/cohorts/cohorts";
import { evaluateCohortGates, evaluateTripRules } from "../../services/cohorts/gates";
import { operatorProcedure, router, viewerProcedure } from "../init";

export const cohortsRouter = router({
  list: viewerProcedure.input(ZCohortsInput).query(({ input }) => listCohorts(input.planId, input.limit)),
  draw: operatorProcedure.input(ZDrawLadderInput).mutation(({ ctx, input }) => drawLadder(ctx.actor, input)),
  move: operatorProcedure.input(ZMoveTenantInput).mutation(({ ctx, input }) => moveTenant(ctx.actor, input)),
  setTags: operatorProcedure.input(ZSetTagsInput).mutation(({ ctx, input }) => setTags(ctx.actor, input)),
  tenant: viewerProcedure
    .input(ZTenantOverviewInput)
    .query(({ input }) => tenantOverview(input.planId, input.tenantKey)),
  gates: viewerProcedure
    .input(ZGatesInput)
    .query(({ input }) => evaluateCohortGates(input.planId, input.ordinal)),
  tripRules: viewerProcedure.input(ZTripRulesInput).query(({ input }) => evaluateTripRules(input.planId)),
});
