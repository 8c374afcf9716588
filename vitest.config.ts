import path from "node:path";
import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: { alias: { "@": path.resolve(import.meta.dirname) } },
  test: {
    include: ["server/**/*.test.ts", "scripts/**/*.test.ts", "components/**/*.test.ts"],
    globalSetup: ["server/testing/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration tests share servers; files run in parallel on 2 cores, each owning its databases.
    fileParallelism: true,
    maxWorkers: 2,
    allowOnly: !process.env.CI,
    // Workers started by tests do not trip the breaker by themselves: many tests make stray writes or
    // drift on purpose. The tests of automatic trips turn it on (startWorker's autoTrip option).
    env: { SHARDSHIFT_AUTO_TRIP: "off" },
  },
});
