// tRPC wiring: context (signed-in user, request id), the error mapping from domain AppErrors to
// HTTP statuses, field errors for forms, and one procedure builder per role. Roles are enforced
// here, on the server: the UI only mirrors them.
import crypto from "node:crypto";
import { initTRPC, TRPCError } from "@trpc/server";
import superjson from "superjson";
import { ZodError } from "zod";
import { type SessionUser, sessionUser } from "../auth/auth";
import { clientAddressOf } from "../auth/client-address";
import { AppError } from "../errors";
import { zodFieldErrors } from "../schemas/field-errors";
import { ROLE_INFO, roleAtLeast, type TRole } from "../schemas/user";
import type { Actor } from "../services/actor";
import { recordRefusalQuietly } from "../services/audit/refusals";
import { clientRequestIdOf } from "./client-request-id";
import { domainErrorOf } from "./domain-errors";

export async function createContext(opts: { headers: Headers }): Promise<Context> {
  // The request id is the server's own (unique, so an event's request cannot be forged or merged
  // with another's); the client's x-request-id is kept apart, bounded, for correlation only.
  const requestId = crypto.randomUUID();
  const clientRequestId = clientRequestIdOf(opts.headers);
  return {
    user: await sessionUser(opts.headers),
    requestId,
    clientRequestId,
    clientAddress: clientAddressOf(opts.headers),
  };
}
export interface Context {
  user: SessionUser | null;
  requestId: string;
  /** The client's own x-request-id, bounded; for correlation only. */
  clientRequestId?: string | null;
  /** The caller's address as our HTTP server resolved it (absent for in-process callers). */
  clientAddress?: string | null;
}

/** Field path → messages, from zod issues or from an AppError that names its field. */
function fieldErrorsOf(error: TRPCError): Record<string, string[]> | null {
  const cause = error.cause;
  if (cause instanceof ZodError) return zodFieldErrors(cause);
  if (cause instanceof AppError && cause.field) return { [cause.field]: [cause.message] };
  return null;
}

/** What a user sees of an internal error: never its text (Prisma's names source files and code lines). */
export function internalErrorMessage(requestId: string | undefined): string {
  return `Something went wrong on the server; nothing was changed by you. It is logged${requestId ? ` under request id ${requestId}` : ""}: quote it when you report this.`;
}

const t = initTRPC.context<Context>().create({
  transformer: superjson,
  errorFormatter({ shape, error, ctx }) {
    const fieldErrors = fieldErrorsOf(error);
    return {
      ...shape,
      message:
        error.cause instanceof ZodError
          ? "Some fields are not valid: see the messages beside them."
          : error.code === "INTERNAL_SERVER_ERROR"
            ? internalErrorMessage(ctx?.requestId)
            : shape.message,
      data: { ...shape.data, stack: undefined, fieldErrors },
    };
  },
});

export const createCallerFactory = t.createCallerFactory;
export const router = t.router;

const mapDomainErrors = t.middleware(async ({ ctx, path, next }) => {
  const result = await next();
  if (!result.ok) {
    const domain = domainErrorOf(result.error.cause);
    if (domain) throw new TRPCError({ code: domain.code, message: domain.message, cause: domain });
    if (result.error.code === "INTERNAL_SERVER_ERROR") {
      // The whole error stays here, in the server's log; the caller gets the request id (errorFormatter).
      console.error(`[trpc] ${path} failed (request ${ctx.requestId})`, result.error.cause ?? result.error);
    }
  }
  return result;
});

export const publicProcedure = t.procedure.use(mapDomainErrors);

function requireRole(needed: TRole) {
  return t.middleware(async ({ ctx, next, path }) => {
    // Refusals are audited (their own kind, at most one event a minute per caller).
    const refuse = async (status: 401 | 403, reason: string) =>
      recordRefusalQuietly({
        kind: "access.refused",
        user: ctx.user,
        address: ctx.clientAddress ?? null,
        target: { type: "procedure", id: path },
        status,
        reason,
        requestId: ctx.requestId,
      });
    if (!ctx.user) {
      await refuse(401, "not signed in");
      throw new TRPCError({ code: "UNAUTHORIZED", message: "Sign in to continue." });
    }
    if (!roleAtLeast(ctx.user.role, needed)) {
      await refuse(403, `needs the ${needed} role; has ${ctx.user.role}`);
      throw new TRPCError({
        code: "FORBIDDEN",
        message: `This needs the ${ROLE_INFO[needed].title} role (to ${ROLE_INFO[needed].may}); you are signed in as ${ROLE_INFO[ctx.user.role].title}. Nothing was changed.`,
      });
    }
    const user: SessionUser = ctx.user;
    const actor: Actor = {
      id: user.id,
      email: user.email,
      role: user.role,
      requestId: ctx.requestId,
      clientRequestId: ctx.clientRequestId ?? null,
    };
    return next({ ctx: { ...ctx, user, actor } });
  });
}

export const viewerProcedure = publicProcedure.use(requireRole("viewer"));
export const operatorProcedure = publicProcedure.use(requireRole("operator"));
export const adminProcedure = publicProcedure.use(requireRole("admin"));
