"use client";

import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { createTRPCClient, httpBatchStreamLink } from "@trpc/client";
import { createTRPCContext } from "@trpc/tanstack-react-query";
import { type ReactNode, useState } from "react";
import superjson from "superjson";
import type { AppRouter } from "@/server/trpc/root";

export const { TRPCProvider, useTRPC } = createTRPCContext<AppRouter>();

export function Providers({ children }: { children: ReactNode }) {
  const [queryClient] = useState(
    () =>
      new QueryClient({
        defaultOptions: {
          queries: {
            staleTime: 5_000,
            // A 4xx will not fix itself by retrying; say so at once. (The status is in the error's
            // data: its text holds only the message, so matching code names in it never matched.)
            retry: (count, error) => {
              const status = (error as { data?: { httpStatus?: number } }).data?.httpStatus ?? 500;
              return count < 2 && (status < 400 || status >= 500);
            },
          },
        },
      }),
  );
  const [trpcClient] = useState(() =>
    // Streamed: each query of a batch arrives when it is ready. With one JSON answer per batch, a
    // slow query (the cohort query once took minutes) held the movement's status and every figure
    // polled beside it.
    createTRPCClient<AppRouter>({
      links: [httpBatchStreamLink({ url: "/api/trpc", transformer: superjson })],
    }),
  );
  return (
    <QueryClientProvider client={queryClient}>
      <TRPCProvider trpcClient={trpcClient} queryClient={queryClient}>
        {children}
      </TRPCProvider>
    </QueryClientProvider>
  );
}
