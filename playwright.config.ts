// Browser tests drive the real, built app in Debian's Chromium (Playwright's own browser download
// is not available here). The web server is `npm run demo` itself, on its own ports and a fresh
// data directory with a small dataset, so the quick start is exercised by every run. It runs with
// --empty (no sample plan): each spec makes its own plans on the demo's shards, and a sample plan
// moving data into them would refuse their movements. The sample plan has its own test
// (server/demo/sample-plan.test.ts).
import os from "node:os";
import path from "node:path";
import { defineConfig } from "@playwright/test";

// Defaults sit below Linux's ephemeral port range (32768+), so an outgoing connection never holds one.
// The variables let several checkouts run their browser tests side by side.
export const E2E = {
  port: Number(process.env.E2E_PORT ?? 3100),
  pgPortBase: Number(process.env.E2E_PG_PORT_BASE ?? 25_320),
  dataDir: process.env.E2E_DATA_DIR ?? path.join(os.tmpdir(), "shardshift-e2e"),
};

export default defineConfig({
  testDir: "e2e",
  outputDir: "test-results/e2e",
  fullyParallel: false,
  workers: 1,
  forbidOnly: Boolean(process.env.CI),
  retries: 0,
  timeout: 60_000,
  expect: { timeout: 15_000 },
  reporter: [["list"]],
  projects: [
    { name: "setup", testMatch: /auth\.setup\.ts/ },
    { name: "chromium", dependencies: ["setup"], testIgnore: /auth\.setup\.ts/ },
  ],
  use: {
    baseURL: `http://localhost:${E2E.port}`,
    viewport: { width: 1280, height: 900 },
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
  webServer: {
    command: "node --import tsx scripts/demo.ts --fresh --empty --no-build",
    url: `http://localhost:${E2E.port}/sign-in`,
    reuseExistingServer: false,
    timeout: 180_000,
    stdout: "pipe",
    stderr: "pipe",
    gracefulShutdown: { signal: "SIGTERM", timeout: 20_000 },
    env: {
      PORT: String(E2E.port),
      SHARDSHIFT_PG_PORT_BASE: String(E2E.pgPortBase),
      SHARDSHIFT_DATA_DIR: E2E.dataDir,
      SHARDSHIFT_SHARDS: "2",
      SHARDSHIFT_DEMO_TENANTS: "2000",
      SHARDSHIFT_DEMO_ROWS: "30000",
      SHARDSHIFT_WORKLOAD_RATE: "50",
      // The specs trip the breaker by hand and make stray writes on purpose; automatic trips are
      // proven by server/engine/breaker/breaker-shard-down.test.ts.
      SHARDSHIFT_AUTO_TRIP: "off",
    },
  },
});
