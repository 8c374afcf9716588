import { z } from "zod";
import {
  ZCreatePlanInput,
  ZPlanIdInput,
  ZPlanTransitionInput,
  ZUpdatePlanSettingsInput,
} from "../../schemas/plan";
import {
  createPlan,
  getPlan,
  listPlans,
  transitionPlan,
  updatePlanSettings,
} from "../../services/plans/plans";
import { operatorProcedure, router, viewerProcedure } from "../init";

export const plansRouter = router({
  list: viewerProcedure
    .input(z.object({ includeArchived: z.boolean().default(false) }).default({ includeArchived: false }))
    .query(({ input }) => listPlans(input)),
  byId: viewerProcedure.input(ZPlanIdInput).query(({ input }) => getPlan(input.planId)),
  create: operatorProcedure
    .input(ZCreatePlanInput)
    .mutation(({ ctx, input }) => createPlan(ctx.actor, input)),
  updateSettings: operatorProcedure
    .input(ZUpdatePlanSettingsInput)
    .mutation(({ ctx, input }) => updatePlanSettings(ctx.actor, input)),
  transition: operatorProcedure
    .input(ZPlanTransitionInput)
    .mutation(({ ctx, input }) => transitionPlan(ctx.actor, input)),
});
