// Prisma CLI configuration. The runtime never reads this file: the app builds its client with the
// `@prisma/adapter-pg` driver adapter in server/db.ts. Migrations are applied by our own runner
// (server/store/migrate.ts), so the CLI only needs the schema path for `prisma generate`.
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  datasource: { url: process.env.DATABASE_URL ?? "postgresql://localhost:5432/shardshift" },
});
