// GET /api/routing/map — the routing map for applications' routers (app/api/routing/map/route.ts).
//
//   Authorization: Bearer sst_…        an API token of the plan (the token names the plan)
//   ?since=V                          only the routes changed after version V (a delta); omit for all
//   ?wait=S                           long-poll: hold up to S seconds (≤ 60) for a newer version
//   If-None-Match: "map-V"            the version the router holds
//
// Answers: 200 with the map (ETag "map-<version>") when the map is newer than If-None-Match (or
// none was sent); 304 when it is not newer after waiting; 401 for a missing or invalid token; 400
// for a bad query. A router polls with since=<its version>&wait=30 and If-None-Match: "map-<its
// version>", and applies each delta: the server answers the moment a change commits.
import { routingMapEtag, versionOfEtag } from "../../../sdk/map-types";
import { db } from "../../db";
import { routingMapVersion } from "../../engine/routing/routing-map";
import { ZRoutingMapQuery } from "../../schemas/routing";
import { authenticateApiToken } from "./api-tokens";
import { routingMapNotifier } from "./map-notifier";
import { readRoutingMapSnapshot } from "./routing";

const NO_STORE = { "cache-control": "no-store" };

function problem(status: number, message: string): Response {
  return Response.json({ error: message }, { status, headers: NO_STORE });
}

export async function serveRoutingMap(req: Request): Promise<Response> {
  const auth = await authenticateApiToken(req.headers.get("authorization"));
  if (!auth.ok) {
    return new Response(JSON.stringify({ error: auth.reason }), {
      status: 401,
      headers: {
        ...NO_STORE,
        "content-type": "application/json",
        "www-authenticate": 'Bearer realm="shardshift-routing"',
      },
    });
  }
  const params = new URL(req.url).searchParams;
  const parsed = ZRoutingMapQuery.safeParse({
    since: params.get("since") ?? undefined,
    wait: params.get("wait") ?? undefined,
  });
  if (!parsed.success) {
    return problem(
      400,
      `${parsed.error.issues.map((i) => i.message).join("; ")}. Example: ?since=12&wait=30`,
    );
  }
  const { since, wait } = parsed.data;
  const held = versionOfEtag(req.headers.get("if-none-match"));
  let version = await routingMapVersion(db(), auth.planId);
  if (held !== null && version <= held && wait > 0) {
    version = await routingMapNotifier().waitForMapChange(
      auth.planId,
      held,
      wait * 1000,
      () => routingMapVersion(db(), auth.planId),
      req.signal,
    );
  }
  if (held !== null && version <= held) {
    return new Response(null, { status: 304, headers: { ...NO_STORE, etag: routingMapEtag(version) } });
  }
  const map = await readRoutingMapSnapshot(auth.planId, since ?? null);
  if (!map) return problem(404, "The plan of this token no longer exists.");
  return Response.json(map, { headers: { ...NO_STORE, etag: routingMapEtag(map.version) } });
}
