// Domain errors. Services throw AppError; the tRPC layer maps `code` to an HTTP status in one place
// (server/trpc/init.ts). `field` names the form field the error belongs to, so forms can show it
// beside the input instead of in a banner.
export type AppErrorCode =
  | "BAD_REQUEST"
  | "NOT_FOUND"
  | "CONFLICT"
  | "FORBIDDEN"
  | "PRECONDITION_FAILED"
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
