// Cross-site request forgery: a page elsewhere must not make a signed-in person's browser change
// anything here. Every state-changing request (any method but GET, HEAD, OPTIONS) is checked the
// way Go 1.25's http.CrossOriginProtection does it, against the dashboard's own origins:
// - Sec-Fetch-Site (sent by every current browser) must say "same-origin" (or "none": typed by
//   the person), unless Origin is one of ours;
// - without Sec-Fetch-Site, an Origin must be ours or match the Host it was sent to;
// - with neither header the request did not come from a browser (curl, scripts, the test
//   harness), so no one's cookies were borrowed: it goes through, and the role checks apply.

import { sessionUser } from "../auth/auth";
import { clientAddressOf } from "../auth/client-address";
import { dashboardOrigins } from "../auth/origins";
import { recordRefusalQuietly } from "../services/audit/refusals";

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** Why the request is refused, or null when it may go on. */
export function foreignOriginReason(request: Request, trustedOrigins: readonly string[]): string | null {
  if (SAFE_METHODS.has(request.method.toUpperCase())) return null;
  const origin = request.headers.get("origin");
  if (origin && origin !== "null" && trustedOrigins.includes(origin)) return null;
  const site = request.headers.get("sec-fetch-site");
  if (site) {
    if (site === "same-origin" || site === "none") return null;
    return `it came from another site (${origin ?? "no Origin header"}, Sec-Fetch-Site: ${site})`;
  }
  if (!origin) return null;
  let originHost: string | null = null;
  try {
    originHost = new URL(origin).host;
  } catch {
    // "null" (a sandboxed frame, a file: page) or garbage: not ours.
  }
  if (originHost && originHost === request.headers.get("host")) return null;
  return `its Origin ${origin} is not this dashboard's`;
}

/**
 * Wraps a route handler: foreign-origin state changes get 403 with what to do next, and the
 * refusal goes to the audit log (rate limited).
 */
export function guardStateChanges(handler: (request: Request) => Promise<Response> | Response) {
  return async (request: Request): Promise<Response> => {
    const reason = foreignOriginReason(request, dashboardOrigins());
    if (!reason) return handler(request);
    const path = new URL(request.url).pathname;
    const user = await sessionUser(request.headers).catch(() => null);
    await recordRefusalQuietly({
      kind: "access.refused",
      user,
      address: clientAddressOf(request.headers),
      target: { type: "endpoint", id: path },
      status: 403,
      reason: `foreign origin: ${reason}`,
      requestId: crypto.randomUUID(),
    });
    return Response.json(
      {
        error: {
          message: `Refused: ${reason}. Changes are accepted only from the Shardshift dashboard itself; open it at ${dashboardOrigins()[0]} and try again. Nothing was changed.`,
          code: "FORBIDDEN_ORIGIN",
        },
      },
      { status: 403 },
    );
  };
}
