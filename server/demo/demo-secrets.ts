// Secrets the demo generates on its first run and keeps with its data (mode 0600), so a restart
// reuses them: the servers' password was fixed at initdb, and stored URLs were encrypted with the key.
import crypto from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { generateSecretKey } from "../security/secrets";

export interface DemoSecrets {
  pgPassword: string;
  secretKey: string;
  authSecret: string;
  /** Signs the audit chain's digests (SHARDSHIFT_AUDIT_KEY); kept here, never in the control plane. */
  auditKey: string;
}

export async function loadDemoSecrets(dataDir: string, env: NodeJS.ProcessEnv): Promise<DemoSecrets> {
  const file = path.join(dataDir, "demo-secrets.json");
  let stored: Partial<DemoSecrets> = {};
  try {
    stored = JSON.parse(await fs.readFile(file, "utf8")) as Partial<DemoSecrets>;
  } catch {
    // First run: generated below.
  }
  const secrets: DemoSecrets = {
    pgPassword: stored.pgPassword ?? crypto.randomBytes(18).toString("base64url"),
    secretKey: env.SHARDSHIFT_SECRET_KEY ?? stored.secretKey ?? generateSecretKey(),
    authSecret: env.BETTER_AUTH_SECRET ?? stored.authSecret ?? crypto.randomBytes(32).toString("base64url"),
    auditKey: env.SHARDSHIFT_AUDIT_KEY ?? stored.auditKey ?? crypto.randomBytes(32).toString("base64"),
  };
  await fs.mkdir(dataDir, { recursive: true });
  await fs.writeFile(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  return secrets;
}
