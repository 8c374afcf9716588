import {
  ZCohortsInput,
  ZDrawLadderInput,
  ZGatesInput,
  ZMoveTenantInput,
  ZPromoteInput,
  ZPromotePreviewInput,
  ZPromotionControlInput,
  ZPromotionsInput,
  ZRetryTenantInput,
  ZSetTagsInput,
  ZTenantOverviewInput,
  ZTenantPlacementInput,
  ZTripRulesInput,
} from "../../schemas/cohorts";
import {
  drawLadder,
  listCohorts,
  moveTenant,
  setTags,
  tenantOverview,
  tenantPlacement,
} from "../../services/cohorts/cohorts";
import { evaluateCohortGates, evaluateTripRules } from "../../services/cohorts/gates";
import {
  listPromotions,
  pausePromotion,
  previewPromotion,
  promote,
  resumePromotion,
  retryTenant,
  stopPromotion,
} from "../../services/cohorts/promotion";
import { operatorProcedure, router, viewerProcedure } from "../init";

export const cohortsRouter = router({
  list: viewerProcedure.input(ZCohortsInput).query(({ input }) => listCohorts(input.planId, input.limit)),
  placement: viewerProcedure
    .input(ZTenantPlacementInput)
    .query(({ input }) => tenantPlacement(input.planId, input.limit)),
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
  // Promotion (operators; an admin may override a gate with a reason): a durable job the workers drive.
  promotePreview: viewerProcedure.input(ZPromotePreviewInput).query(({ input }) => previewPromotion(input)),
  promote: operatorProcedure.input(ZPromoteInput).mutation(({ ctx, input }) => promote(ctx.actor, input)),
  pausePromotion: operatorProcedure
    .input(ZPromotionControlInput)
    .mutation(({ ctx, input }) => pausePromotion(ctx.actor, input)),
  resumePromotion: operatorProcedure
    .input(ZPromotionControlInput)
    .mutation(({ ctx, input }) => resumePromotion(ctx.actor, input)),
  stopPromotion: operatorProcedure
    .input(ZPromotionControlInput)
    .mutation(({ ctx, input }) => stopPromotion(ctx.actor, input)),
  promotions: viewerProcedure.input(ZPromotionsInput).query(({ input }) => listPromotions(input)),
  retryTenant: operatorProcedure
    .input(ZRetryTenantInput)
    .mutation(({ ctx, input }) => retryTenant(ctx.actor, input)),
});
