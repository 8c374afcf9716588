// The one place where errors that are not AppErrors become answers a person can act on. Services
// check what they can up front, but some refusals only the database can make at the moment of
// writing (two concurrent creates with the same name both pass the "name free?" check), and some
// input only the database can judge (a tenant key typed for a bigint column). Those reached users as
// 500s carrying Prisma's message, with source paths and code lines. Everything not mapped here is
// an internal error: logged in full on the server, answered with a request id only (init.ts).
import { AppError } from "../errors";
import { Prisma } from "../generated/prisma/client";

/** What a unique constraint protects, in words, keyed by its index name (see prisma/migrations). */
const UNIQUE_MEANING: Record<string, { message: string; field?: string }> = {
  plan_name_key: { message: "A plan with this name already exists. Choose another name.", field: "name" },
  database_name_key: {
    message: "A database is already registered under this name. Choose another name.",
    field: "name",
  },
  user_email_key: { message: "This email address already has an account.", field: "email" },
};

/**
 * PostgreSQL data exceptions a caller's value causes (SQLSTATE class 22): the value, not the server,
 * is wrong. 22021 and 22P05: text PostgreSQL cannot store (a NUL character), in a column or in jsonb.
 */
const BAD_VALUE_STATES = new Set([
  "22P02",
  "22003",
  "22007",
  "22008",
  "22023",
  "22001",
  "2201B",
  "22021",
  "22P05",
]);

interface DriverCause {
  originalCode?: string;
  originalMessage?: string;
  constraint?: { index?: string; fields?: string[] };
  table?: string;
}

function driverCause(error: Prisma.PrismaClientKnownRequestError): DriverCause {
  const meta = error.meta as { driverAdapterError?: { cause?: DriverCause } } | undefined;
  return meta?.driverAdapterError?.cause ?? {};
}

/** A node-postgres error (engine queries, better-auth's pool) carries the server's SQLSTATE. */
function pgError(error: unknown): { code: string; message: string; constraint?: string } | null {
  if (!(error instanceof Error)) return null;
  const { code, severity, constraint } = error as {
    code?: unknown;
    severity?: unknown;
    constraint?: unknown;
  };
  if (typeof code !== "string" || !/^[0-9A-Z]{5}$/.test(code) || typeof severity !== "string") return null;
  return {
    code,
    message: error.message,
    constraint: typeof constraint === "string" ? constraint : undefined,
  };
}

function badValue(message: string): AppError {
  return new AppError(
    "BAD_REQUEST",
    `A value does not fit what the database expects: ${message}. Nothing was changed.`,
  );
}

function duplicate(index: string | undefined, table: string | undefined, cause: unknown): AppError {
  const meaning = UNIQUE_MEANING[index ?? ""];
  const what = (table ?? "record").replaceAll("_", " ");
  return new AppError(
    "CONFLICT",
    meaning?.message ??
      `This ${what} already exists (someone else may have just created it). Reload to see it.`,
    { field: meaning?.field, cause },
  );
}

/** The AppError this error means for the caller, or null when it is an internal error. */
export function domainErrorOf(error: unknown): AppError | null {
  if (error instanceof AppError) return error;
  if (error instanceof Prisma.PrismaClientKnownRequestError) {
    const cause = driverCause(error);
    switch (error.code) {
      case "P2002":
        return duplicate(cause.constraint?.index, cause.table, error);
      case "P2025":
        return new AppError("NOT_FOUND", "It no longer exists: it may have been removed meanwhile. Reload.", {
          cause: error,
        });
      case "P2003":
        return new AppError(
          "CONFLICT",
          "It refers to something that was removed meanwhile, or is still used by something else. Reload and try again.",
          { cause: error },
        );
      case "P2034":
        return new AppError(
          "CONFLICT",
          "Another change collided with this one; nothing was changed. Try again.",
          {
            cause: error,
          },
        );
      default:
        // Whatever Prisma calls it (P2020, P2010, P2039 for a NUL in text, P2007 for a lone surrogate
        // in jsonb …), the server's SQLSTATE says whether the caller's value was at fault.
        if (cause.originalCode && BAD_VALUE_STATES.has(cause.originalCode)) {
          return badValue(cause.originalMessage ?? "out of range");
        }
        return null;
    }
  }
  const pg = pgError(error);
  if (pg && BAD_VALUE_STATES.has(pg.code)) return badValue(pg.message);
  if (pg?.code === "23505") return duplicate(pg.constraint, undefined, error);
  return null;
}
