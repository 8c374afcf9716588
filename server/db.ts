// The one Prisma client for the control plane's own tables. Engine code reaches source and shard
// databases through plain `pg`, never through this client.
import { PrismaPg } from "@prisma/adapter-pg";
import { serverEnv } from "./env";
import { PrismaClient } from "./generated/prisma/client";

export type { Prisma } from "./generated/prisma/client";

let client: PrismaClient | undefined;

export function createPrismaClient(connectionString: string): PrismaClient {
  // "minimal": Prisma's default message names our source file and quotes code lines around the
  // call, and engine errors (stored for the dashboard) and API errors reached users with them.
  return new PrismaClient({ adapter: new PrismaPg({ connectionString, max: 10 }), errorFormat: "minimal" });
}

/** Lazily created so that importing this module never needs a database (e.g. during `next build`). */
export function db(): PrismaClient {
  client ??= createPrismaClient(serverEnv().DATABASE_URL);
  return client;
}

export async function disconnectDb(): Promise<void> {
  await client?.$disconnect();
  client = undefined;
}
