import {
  ZChangeOwnPasswordInput,
  ZCreateUserInput,
  ZRenameSelfInput,
  ZResetPasswordInput,
  ZSetRoleInput,
  ZUserAccessInput,
} from "../../schemas/user";
import {
  changeOwnPassword,
  disableUser,
  enableUser,
  resetUserPassword,
  signOutEverywhere,
} from "../../services/users/account-access";
import { createUser, listUsers, renameSelf, setUserRole } from "../../services/users/users";
import { adminProcedure, publicProcedure, router, viewerProcedure } from "../init";

export const usersRouter = router({
  me: publicProcedure.query(({ ctx }) => ctx.user),
  list: adminProcedure.query(() => listUsers()),
  create: adminProcedure.input(ZCreateUserInput).mutation(({ ctx, input }) => createUser(ctx.actor, input)),
  renameSelf: viewerProcedure
    .input(ZRenameSelfInput)
    .mutation(({ ctx, input }) => renameSelf(ctx.actor, input)),
  setRole: adminProcedure.input(ZSetRoleInput).mutation(({ ctx, input }) => setUserRole(ctx.actor, input)),
  disable: adminProcedure.input(ZUserAccessInput).mutation(({ ctx, input }) => disableUser(ctx.actor, input)),
  enable: adminProcedure.input(ZUserAccessInput).mutation(({ ctx, input }) => enableUser(ctx.actor, input)),
  resetPassword: adminProcedure
    .input(ZResetPasswordInput)
    .mutation(({ ctx, input }) => resetUserPassword(ctx.actor, input)),
  signOutEverywhere: viewerProcedure.mutation(({ ctx }) => signOutEverywhere(ctx.actor)),
  changeOwnPassword: viewerProcedure
    .input(ZChangeOwnPasswordInput)
    .mutation(({ ctx, input }) => changeOwnPassword(ctx.actor, { ...input, sessionId: ctx.user.sessionId })),
});
