import type { Metadata } from "next";
import type { ReactNode } from "react";
import { Providers } from "@/components/providers/trpc";
import "./globals.css";

// Every page is rendered per request, so each gets its own CSP nonce (proxy.ts).
export const dynamic = "force-dynamic";

export const metadata: Metadata = {
  title: { default: "Shardshift", template: "%s · Shardshift" },
  description: "Split a PostgreSQL monolith into tenant shards with no downtime and no lost writes.",
};

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body className="min-h-screen text-sm">
        <Providers>{children}</Providers>
      </body>
    </html>
  );
}
