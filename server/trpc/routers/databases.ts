import { ZRegisterDatabaseInput, ZRemoveDatabaseInput, ZTestConnectionInput } from "../../schemas/database";
import {
  listDatabases,
  registerDatabase,
  removeDatabase,
  testConnection,
} from "../../services/databases/databases";
import { adminProcedure, router, viewerProcedure } from "../init";

export const databasesRouter = router({
  list: viewerProcedure.query(() => listDatabases()),
  register: adminProcedure
    .input(ZRegisterDatabaseInput)
    .mutation(({ ctx, input }) => registerDatabase(ctx.actor, input)),
  testConnection: adminProcedure
    .input(ZTestConnectionInput)
    .mutation(({ ctx, input }) => testConnection(ctx.actor, input)),
  remove: adminProcedure
    .input(ZRemoveDatabaseInput)
    .mutation(({ ctx, input }) => removeDatabase(ctx.actor, input)),
});
