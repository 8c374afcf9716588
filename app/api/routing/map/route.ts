// The routing map for applications' routers: bearer token, ETag, long-poll (server/services/routing/map-http.ts).
import { serveRoutingMap } from "@/server/services/routing/map-http";

export const dynamic = "force-dynamic";

export function GET(req: Request) {
  return serveRoutingMap(req);
}
