import { fetchRequestHandler } from "@trpc/server/adapters/fetch";
import { guardStateChanges } from "@/server/security/origin-guard";
import { createContext } from "@/server/trpc/init";
import { appRouter } from "@/server/trpc/root";

export const dynamic = "force-dynamic";

const handler = (req: Request) =>
  fetchRequestHandler({
    endpoint: "/api/trpc",
    req,
    router: appRouter,
    createContext: () => createContext({ headers: req.headers }),
  });

// Mutations are POSTs: a foreign origin is refused before any procedure runs.
const guarded = guardStateChanges(handler);

export { guarded as GET, guarded as POST };
