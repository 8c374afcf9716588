// tRPC wiring: context (signed-in user, request id), the error mapping from domain AppErrors to
// HTTP statuses, field errors for forms, and one procedure builder per role. Roles are enforced
// here, on the server: the UI only mirrors them.
import crypto from "node:crypto";
import { initTRPC, TRPCError } from "@trpc/server";
import superjson from "superjson";
import { ZodError } from "zod";
import { type SessionUser, sessionUser } from "../auth/auth";
import { AppError } from "../errors";
import { zodFieldErrors } from "../schemas/field-errors";
import { ROLE_INFO, roleAtLeast, type TRole } from "../schemas/user";
import type { Actor } from "../services/actor";

export async function createContext(opts: { headers: Headers }) {
  const requestId = opts.headers.get("x-request-id")?.slice(0, 64) || crypto.randomUUID();
  return { user: await sessionUser(opts.headers), requestId };
}
export type Context = Awaited<ReturnType<typeof createContext>>;

/** Field path → messages, from zod issues or from an AppError that names its field. */
function fieldErrorsOf(error: TRPCError): Record<string, string[]> | null {
  const cause = error.cause;
  if (cause instanceof ZodError) return zodFieldErrors(cause);
  if (cause instanceof AppError && cause.field) return { [cause.field]: [cause.message] };
  return null;
}

const t = initTRPC.context<Context>().create({
  transformer: superjson,
  errorFormatter({ shape, error }) {
    const fieldErrors = fieldErrorsOf(error);
    return {
      ...shape,
      message:
        error.cause instanceof ZodError
          ? "Some fields are not valid: see the messages beside them."
          : shape.message,
      data: { ...shape.data, stack: undefined, fieldErrors },
    };
  },
});

export const createCallerFactory = t.createCallerFactory;
export const router = t.router;

const mapDomainErrors = t.middleware(async ({ next }) => {
  const result = await next();
  if (!result.ok) {
    const cause = result.error.cause;
    if (cause instanceof AppError) throw new TRPCError({ code: cause.code, message: cause.message, cause });
    if (result.error.code === "INTERNAL_SERVER_ERROR") {
      console.error("[trpc] unexpected error", result.error.cause ?? result.error);
    }
  }
  return result;
});

export const publicProcedure = t.procedure.use(mapDomainErrors);

function requireRole(needed: TRole) {
  return t.middleware(({ ctx, next }) => {
    if (!ctx.user) throw new TRPCError({ code: "UNAUTHORIZED", message: "Sign in to continue." });
    if (!roleAtLeast(ctx.user.role, needed)) {
      throw new TRPCError({
        code: "FORBIDDEN",
        message: `This needs the ${ROLE_INFO[needed].title} role (to ${ROLE_INFO[needed].may}); you are signed in as ${ROLE_INFO[ctx.user.role].title}. Nothing was changed.`,
      });
    }
    const user: SessionUser = ctx.user;
    const actor: Actor = { id: user.id, email: user.email, role: user.role, requestId: ctx.requestId };
    return next({ ctx: { ...ctx, user, actor } });
  });
}

export const viewerProcedure = publicProcedure.use(requireRole("viewer"));
export const operatorProcedure = publicProcedure.use(requireRole("operator"));
export const adminProcedure = publicProcedure.use(requireRole("admin"));
