// Domain errors. Services throw AppError; the tRPC layer maps `code` to an HTTP status in one place
// (server/trpc/init.ts). `field` names the form field the error belongs to, so forms can show it
// beside the input instead of in a banner.
export type AppErrorCode =
  | "BAD_REQUEST"
  | "NOT_FOUND"
  | "CONFLICT"
  | "FORBIDDEN"
  | "PRECONDITION_FAILED"
  | "TOO_MANY_REQUESTS"
  | "UNAUTHORIZED";

export class AppError extends Error {
  readonly code: AppErrorCode;
  readonly field: string | undefined;

  constructor(code: AppErrorCode, message: string, options: { field?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "AppError";
    this.code = code;
    this.field = options.field;
  }
}

/**
 * An error text fit for any signed-in user: stack frames, source paths and Prisma's call header
 * removed (the server log keeps them). For engine errors stored as text and shown on the dashboard.
 */
export function withoutInternals(text: string): string {
  const path = /(?:file:\/\/)?(?:\/[\w.@+-]+)+\.(?:[cm]?[jt]sx?)(?::\d+){0,2}/g;
  return text
    .replace(/Invalid `[^`]*` invocation( in)?:?/g, "")
    .split("\n")
    .filter(
      (line) =>
        !/^\s*at\s/.test(line) && // a stack frame
        !/^(\s+|\s*→\s*)\d+\s/.test(line) && // a quoted code line ("  12 await db()…")
        line.replace(path, "").trim() !== "", // a line naming only a source file
    )
    .join(" ")
    .replace(path, "(server file)")
    .replace(/\s{2,}/g, " ")
    .trim();
}
