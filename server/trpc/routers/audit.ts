import { ZAuditListInput } from "../../schemas/audit";
import { listAuditDigests, requestAuditDigest } from "../../services/audit/audit-digest";
import { listAuditActions, verifyChain } from "../../services/audit/audit-query";
import { listNamedAuditEvents } from "../../services/audit/audit-targets";
import { operatorProcedure, router, viewerProcedure } from "../init";

export const auditRouter = router({
  list: viewerProcedure.input(ZAuditListInput).query(({ input }) => listNamedAuditEvents(input)),
  actions: viewerProcedure.query(() => listAuditActions()),
  verify: viewerProcedure.mutation(() => verifyChain()),
  digests: viewerProcedure.query(() => listAuditDigests()),
  requestDigest: operatorProcedure.mutation(({ ctx }) => requestAuditDigest(ctx.actor)),
});
