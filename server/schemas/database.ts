import { z } from "zod";

export const DATABASE_KINDS = ["legacy", "shard"] as const;
export const ZDatabaseKind = z.enum(DATABASE_KINDS);

/** A PostgreSQL connection URL with everything Shardshift needs spelled out. */
export const ZConnectionUrl = z
  .string()
  .trim()
  .min(1, "Enter a connection URL")
  .superRefine((value, ctx) => {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      ctx.addIssue({
        code: "custom",
        message: "Not a URL. Use postgresql://user:password@host:5432/database",
      });
      return;
    }
    if (url.protocol !== "postgresql:" && url.protocol !== "postgres:") {
      ctx.addIssue({ code: "custom", message: "The URL must start with postgresql://" });
    }
    if (!url.hostname) ctx.addIssue({ code: "custom", message: "The URL names no host" });
    if (!url.username)
      ctx.addIssue({ code: "custom", message: "The URL names no user (postgresql://user@host/db)" });
    if (url.pathname.replace(/^\//, "") === "") {
      ctx.addIssue({ code: "custom", message: "The URL names no database (…:5432/database)" });
    }
    if (url.port && (Number(url.port) < 1 || Number(url.port) > 65_535)) {
      ctx.addIssue({ code: "custom", message: "The port must be between 1 and 65535" });
    }
  });

export const ZDatabaseName = z
  .string()
  .trim()
  .min(2, "Name must be at least 2 characters")
  .max(40, "Name must be at most 40 characters")
  .regex(/^[a-z0-9][a-z0-9-]*$/, "Use lower-case letters, digits and dashes (e.g. shard-1)");

export const ZRegisterDatabaseInput = z.object({
  name: ZDatabaseName,
  kind: ZDatabaseKind,
  url: ZConnectionUrl,
});
export type TRegisterDatabaseInput = z.infer<typeof ZRegisterDatabaseInput>;

export const ZTestConnectionInput = z.union([
  z.object({ databaseId: z.uuid() }),
  z.object({ url: ZConnectionUrl }),
]);
export type TTestConnectionInput = z.infer<typeof ZTestConnectionInput>;

export const ZRemoveDatabaseInput = z.object({
  databaseId: z.uuid(),
  reason: z.string().trim().max(500).optional(),
});
