import { ZAuditListInput } from "../../schemas/audit";
import { listAuditActions, listAuditEvents, verifyChain } from "../../services/audit/audit-query";
import { router, viewerProcedure } from "../init";

export const auditRouter = router({
  list: viewerProcedure.input(ZAuditListInput).query(({ input }) => listAuditEvents(input)),
  actions: viewerProcedure.query(() => listAuditActions()),
  verify: viewerProcedure.mutation(() => verifyChain()),
});
