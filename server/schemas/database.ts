import { z } from "zod";

export const DATABASE_KINDS = ["legacy", "shard"] as const;
export const ZDatabaseKind = z.enum(DATABASE_KINDS);

/**
 * Query parameters a connection URL may carry. The driver applies every other one as a connection
 * setting, and several redirect or alter the connection away from what the URL shows and what is
 * audited: `?host=` and `?port=` override the authority, `?user=`/`?database=` the credentials and
 * database, `?options=-c …` the session, `?sslkey=`/`?sslrootcert=` read files on the control
 * plane's machine. Only TLS mode switches are allowed.
 */
export const ALLOWED_URL_PARAMS: Record<string, readonly string[]> = {
  sslmode: ["disable", "prefer", "require", "no-verify", "verify-full"],
  ssl: ["true", "false", "1", "0"],
};

/** Why a URL's query string is refused, or null when it is acceptable. */
export function connectionParamsProblem(url: URL): string | null {
  const refused: string[] = [];
  for (const [key, value] of url.searchParams) {
    const allowed = ALLOWED_URL_PARAMS[key];
    if (!allowed) refused.push(`"${key}"`);
    else if (!allowed.includes(value))
      return `${key}=${value} is not supported: use one of ${allowed.join(", ")}.`;
  }
  if (refused.length === 0) return null;
  return `The URL's parameter${refused.length === 1 ? "" : "s"} ${refused.join(", ")} would change where or how Shardshift connects, away from the host, port, user and database the URL shows. Remove ${refused.length === 1 ? "it" : "them"}: only sslmode and ssl are accepted.`;
}

/**
 * Why a URL's host is refused, or null. The driver (pg-connection-string) percent-decodes the host
 * and WHATWG URL, which shows and audits it, does not: "%2Ftmp" would be shown as a host name and
 * reach the Unix socket in /tmp on the control plane's machine, "local%68ost" another host.
 */
export function connectionHostProblem(url: URL): string | null {
  if (!url.hostname.includes("%")) return null;
  return `The host "${url.hostname}" is percent-encoded: the driver would decode it and connect somewhere other than it shows (%2F… is a Unix socket on Shardshift's own machine). Write the host name or address plainly.`;
}

/** A NUL or other control character, raw or percent-encoded: no host, user or database has one. */
export function connectionTextProblem(raw: string): string | null {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
  if (!/[\u0000-\u001f\u007f]|%[01][0-9a-f]|%7f/i.test(raw)) return null;
  return "The URL contains a control character (such as NUL): no host, user or database name has one. Retype it.";
}

/** A PostgreSQL connection URL with everything Shardshift needs spelled out. */
export const ZConnectionUrl = z
  .string()
  .trim()
  .min(1, "Enter a connection URL")
  .max(2_000, "The URL is too long (at most 2,000 characters)")
  .superRefine((value, ctx) => {
    const text = connectionTextProblem(value);
    if (text) {
      ctx.addIssue({ code: "custom", message: text });
      return;
    }
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
    const host = connectionHostProblem(url);
    if (host) ctx.addIssue({ code: "custom", message: host });
    if (!url.username)
      ctx.addIssue({ code: "custom", message: "The URL names no user (postgresql://user@host/db)" });
    if (url.pathname.replace(/^\//, "") === "") {
      ctx.addIssue({ code: "custom", message: "The URL names no database (…:5432/database)" });
    }
    if (url.port && (Number(url.port) < 1 || Number(url.port) > 65_535)) {
      ctx.addIssue({ code: "custom", message: "The port must be between 1 and 65535" });
    }
    const params = connectionParamsProblem(url);
    if (params) ctx.addIssue({ code: "custom", message: params });
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

/** The first reason a connection URL would connect somewhere other than it shows, or null. */
export function connectionUrlProblem(raw: string): string | null {
  const text = connectionTextProblem(raw);
  if (text) return text;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    return "Not a URL. Use postgresql://user:password@host:5432/database";
  }
  return connectionHostProblem(parsed) ?? connectionParamsProblem(parsed);
}
