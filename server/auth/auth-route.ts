// The HTTP face of better-auth (app/api/auth/[...all]): the origin guard on state changes, only
// the client address our server stamped, and failed sign-ins written to the audit log.
import { guardStateChanges } from "../security/origin-guard";
import { recordRefusalQuietly } from "../services/audit/refusals";
import { auth } from "./auth";
import { clientAddressOf, withTrustedAddress } from "./client-address";

const SIGN_IN_PATH = "/api/auth/sign-in/email";

const FAILURE_REASONS: Record<number, string> = {
  401: "wrong email or password",
  403: "account disabled",
  429: "too many attempts",
};

async function claimedEmail(request: Request): Promise<string | null> {
  try {
    const body = (await request.clone().json()) as { email?: unknown };
    return typeof body.email === "string" ? body.email.trim().slice(0, 200) : null;
  } catch {
    return null;
  }
}

async function handle(incoming: Request): Promise<Response> {
  const request = withTrustedAddress(incoming);
  const isSignIn = request.method === "POST" && new URL(request.url).pathname === SIGN_IN_PATH;
  const email = isSignIn ? await claimedEmail(request) : null;
  const response = await auth().handler(request);
  const reason = FAILURE_REASONS[response.status];
  if (isSignIn && reason) {
    await recordRefusalQuietly({
      kind: "auth.sign_in.failed",
      user: null,
      claimedEmail: email,
      address: clientAddressOf(request.headers),
      target: { type: "user", id: email?.toLowerCase() ?? "unknown" },
      status: response.status,
      reason,
      requestId: crypto.randomUUID(),
    });
  }
  return response;
}

export const handleAuthRequest = guardStateChanges(handle);
