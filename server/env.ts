// Environment, validated once with zod. Read lazily (serverEnv()) so `next build` and the CLI
// scripts can import server modules without a configured environment.
import { z } from "zod";

const YIELD_LAG_MESSAGE =
  "SHARDSHIFT_YIELD_LAG_MS must be a whole number of milliseconds from 0 to 10000 (0: background work never waits for replication)";

const ZServerEnv = z.object({
  DATABASE_URL: z
    .string({
      error: "DATABASE_URL is not set: point it at the control-plane PostgreSQL, or run `npm run demo`.",
    })
    .url("DATABASE_URL must be a postgresql:// URL"),
  SHARDSHIFT_SECRET_KEY: z
    .string({
      error:
        "SHARDSHIFT_SECRET_KEY is not set: it encrypts database passwords at rest. Generate one with `openssl rand -base64 32`.",
    })
    .refine((value) => Buffer.from(value, "base64").length === 32, {
      message: "SHARDSHIFT_SECRET_KEY must be 32 bytes, base64-encoded (openssl rand -base64 32)",
    }),
  SHARDSHIFT_AUDIT_KEY: z
    .string()
    .refine((value) => Buffer.from(value, "base64").length >= 32, {
      message: "SHARDSHIFT_AUDIT_KEY must be at least 32 bytes, base64-encoded (openssl rand -base64 32)",
    })
    .optional(),
  SHARDSHIFT_AUDIT_DIGEST_MINUTES: z.coerce
    .number()
    .int()
    .min(1, "SHARDSHIFT_AUDIT_DIGEST_MINUTES must be 1–59")
    .max(59, "SHARDSHIFT_AUDIT_DIGEST_MINUTES must be 1–59")
    .default(5),
  BETTER_AUTH_SECRET: z.string().min(32, "BETTER_AUTH_SECRET must be at least 32 characters"),
  BETTER_AUTH_URL: z.string().url().default("http://localhost:3000"),
  NODE_ENV: z.enum(["development", "production", "test"]).default("development"),
  // Session policy (server/auth/auth.ts): absolute lifetime from sign-in, never extended by use;
  // an idle limit only when set.
  SHARDSHIFT_SESSION_HOURS: z.coerce
    .number()
    .positive()
    .max(24 * 30)
    .default(12),
  SHARDSHIFT_SESSION_IDLE_MINUTES: z.coerce.number().int().positive().optional(),
  // Read by the CDC thread itself (engine/cdc/thread-priority.ts); checked here so a bad value
  // stops the worker at start with this message.
  SHARDSHIFT_CDC_NICE: z.coerce
    .number({ message: "SHARDSHIFT_CDC_NICE must be an integer from -20 to 19 (0: the worker's priority)" })
    .int("SHARDSHIFT_CDC_NICE must be an integer from -20 to 19 (0: the worker's priority)")
    .min(-20, "SHARDSHIFT_CDC_NICE must be an integer from -20 to 19 (0: the worker's priority)")
    .max(19, "SHARDSHIFT_CDC_NICE must be an integer from -20 to 19 (0: the worker's priority)")
    .optional(),
  // Read where background work yields (engine/shared/replication-pressure.ts); checked here too.
  SHARDSHIFT_YIELD_LAG_MS: z.coerce
    .number({ message: YIELD_LAG_MESSAGE })
    .int(YIELD_LAG_MESSAGE)
    .min(0, YIELD_LAG_MESSAGE)
    .max(10_000, YIELD_LAG_MESSAGE)
    .optional(),
});

export type ServerEnv = z.infer<typeof ZServerEnv>;

let cached: ServerEnv | undefined;

export function serverEnv(): ServerEnv {
  if (cached) return cached;
  const parsed = ZServerEnv.safeParse(process.env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `  - ${issue.message}`).join("\n");
    throw new Error(`Shardshift's environment is incomplete:\n${problems}`);
  }
  cached = parsed.data;
  return cached;
}
