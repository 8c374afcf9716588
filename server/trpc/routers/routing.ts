import {
  ZCreateApiTokenInput,
  ZCutoverPreviewInput,
  ZInstallFencesInput,
  ZListApiTokensInput,
  ZListCutoversInput,
  ZRequestCutoverInput,
  ZRevokeApiTokenInput,
  ZRoutingSummaryInput,
  ZTenantLookupInput,
} from "../../schemas/routing";
import { createApiToken, listApiTokens, revokeApiToken } from "../../services/routing/api-tokens";
import { listCutovers, previewCutover, requestCutover } from "../../services/routing/cutover";
import { installFences, lookupTenantRoute, routingSummary } from "../../services/routing/routing";
import { adminProcedure, operatorProcedure, router, viewerProcedure } from "../init";

export const routingRouter = router({
  summary: viewerProcedure.input(ZRoutingSummaryInput).query(({ input }) => routingSummary(input.planId)),
  tenant: viewerProcedure
    .input(ZTenantLookupInput)
    .query(({ input }) => lookupTenantRoute(input.planId, input.tenantKey)),
  installFences: operatorProcedure
    .input(ZInstallFencesInput)
    .mutation(({ ctx, input }) => installFences(ctx.actor, input)),
  cutoverPreview: viewerProcedure.input(ZCutoverPreviewInput).query(({ input }) => previewCutover(input)),
  requestCutover: operatorProcedure
    .input(ZRequestCutoverInput)
    .mutation(({ ctx, input }) => requestCutover(ctx.actor, input)),
  cutovers: viewerProcedure.input(ZListCutoversInput).query(({ input }) => listCutovers(input)),
  tokens: adminProcedure.input(ZListApiTokensInput).query(({ input }) => listApiTokens(input.planId)),
  createToken: adminProcedure
    .input(ZCreateApiTokenInput)
    .mutation(({ ctx, input }) => createApiToken(ctx.actor, input)),
  revokeToken: adminProcedure
    .input(ZRevokeApiTokenInput)
    .mutation(({ ctx, input }) => revokeApiToken(ctx.actor, input)),
});
