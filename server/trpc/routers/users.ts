import { ZCreateUserInput, ZSetRoleInput } from "../../schemas/user";
import { createUser, listUsers, setUserRole } from "../../services/users/users";
import { adminProcedure, publicProcedure, router } from "../init";

export const usersRouter = router({
  me: publicProcedure.query(({ ctx }) => ctx.user),
  list: adminProcedure.query(() => listUsers()),
  create: adminProcedure.input(ZCreateUserInput).mutation(({ ctx, input }) => createUser(ctx.actor, input)),
  setRole: adminProcedure.input(ZSetRoleInput).mutation(({ ctx, input }) => setUserRole(ctx.actor, input)),
});
