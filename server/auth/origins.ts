// The dashboard's own origins: BETTER_AUTH_URL, and the same port as localhost and 127.0.0.1 (one
// machine, two names a person uses interchangeably). Sign-in (better-auth's trustedOrigins) and
// the origin guard on every state-changing request read the same list.
import { serverEnv } from "../env";

export function dashboardOrigins(): string[] {
  const base = new URL(serverEnv().BETTER_AUTH_URL);
  const aliases = ["localhost", "127.0.0.1"].map(
    (host) => `${base.protocol}//${host}${base.port ? `:${base.port}` : ""}`,
  );
  return [...new Set([base.origin, ...aliases])];
}
