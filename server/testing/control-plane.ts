// A migrated control-plane database of the test's own, with the environment pointing at it.
// Call before anything touches db() or serverEnv(): both are created lazily from process.env.
import crypto from "node:crypto";
import { disconnectDb } from "../db";
import { generateSecretKey } from "../security/secrets";
import { migrateControlPlane } from "../store/migrate";
import { createTestDatabase, type TestDatabase } from "./databases";

export async function useControlPlane(prefix: string): Promise<TestDatabase & { secretKey: string }> {
  const database = await createTestDatabase(prefix);
  await migrateControlPlane(database.url);
  const secretKey = generateSecretKey();
  process.env.DATABASE_URL = database.url;
  process.env.SHARDSHIFT_SECRET_KEY = secretKey;
  process.env.BETTER_AUTH_SECRET = crypto.randomBytes(32).toString("hex");
  process.env.BETTER_AUTH_URL = "http://localhost:3999";
  return {
    ...database,
    secretKey,
    async drop() {
      await disconnectDb();
      await database.drop();
    },
  };
}
