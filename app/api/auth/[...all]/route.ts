import { handleAuthRequest } from "@/server/auth/auth-route";

export const dynamic = "force-dynamic";

// Built per request from the lazily created instance, so `next build` needs no environment.
export const GET = (req: Request) => handleAuthRequest(req);
export const POST = (req: Request) => handleAuthRequest(req);
