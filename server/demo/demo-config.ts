// The demo's configuration, from environment variables, validated so a typo fails loudly.
import os from "node:os";
import path from "node:path";
import { z } from "zod";

const int = (fallback: number, min: number, max: number) =>
  z.coerce.number().int().min(min).max(max).default(fallback);

const ZDemoConfig = z.object({
  dataDir: z.string().default(path.join(os.tmpdir(), "shardshift")),
  pgPortBase: int(24_320, 1024, 65_000),
  shards: int(4, 1, 16),
  tenants: int(2_000, 10, 1_000_000),
  rows: int(1_000_000, 1_000, 100_000_000),
  writesPerSecond: int(300, 0, 20_000),
  webPort: int(3000, 1, 65_535),
  controlPlaneUrl: z.string().url().optional(),
  skipBuild: z.boolean().default(false),
  fresh: z.boolean().default(false),
  /** No sample plan: a bare environment (the browser tests' specs make their own plans). */
  empty: z.boolean().default(false),
});

export type DemoConfig = z.infer<typeof ZDemoConfig>;

export function demoConfigFromEnv(env: NodeJS.ProcessEnv, argv: string[]): DemoConfig {
  const parsed = ZDemoConfig.safeParse({
    dataDir: env.SHARDSHIFT_DATA_DIR || undefined,
    pgPortBase: env.SHARDSHIFT_PG_PORT_BASE || undefined,
    shards: env.SHARDSHIFT_SHARDS || undefined,
    tenants: env.SHARDSHIFT_DEMO_TENANTS || undefined,
    rows: env.SHARDSHIFT_DEMO_ROWS || undefined,
    writesPerSecond: env.SHARDSHIFT_WORKLOAD_RATE || undefined,
    webPort: env.PORT || undefined,
    controlPlaneUrl: env.DATABASE_URL || undefined,
    skipBuild: argv.includes("--no-build") || env.SHARDSHIFT_SKIP_BUILD === "1",
    fresh: argv.includes("--fresh"),
    empty: argv.includes("--empty"),
  });
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `  - ${i.path.join(".")}: ${i.message}`).join("\n");
    throw new Error(`The demo configuration is not valid:\n${problems}\nSee "Configuration" in README.md.`);
  }
  return parsed.data;
}
