import { auth } from "@/server/auth/auth";

export const dynamic = "force-dynamic";

// Built per request from the lazily created instance, so `next build` needs no environment.
export const GET = (req: Request) => auth().handler(req);
export const POST = (req: Request) => auth().handler(req);
