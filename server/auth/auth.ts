// Sign-in through better-auth (email + password, sessions in the control-plane database via the
// Prisma adapter). Public sign-up is off: admins add people (server/services/users), so nobody
// grants themselves a role. Created lazily so `next build` needs no environment.

import { betterAuth } from "better-auth";
import { prismaAdapter } from "better-auth/adapters/prisma";
import { nextCookies } from "better-auth/next-js";
import { db } from "../db";
import { serverEnv } from "../env";

function buildAuth() {
  const env = serverEnv();
  const base = new URL(env.BETTER_AUTH_URL);
  // The same server is reachable as localhost and 127.0.0.1; both are the same origin to a person.
  const aliases = ["localhost", "127.0.0.1"].map(
    (host) => `${base.protocol}//${host}${base.port ? `:${base.port}` : ""}`,
  );
  return betterAuth({
    secret: env.BETTER_AUTH_SECRET,
    baseURL: env.BETTER_AUTH_URL,
    trustedOrigins: [base.origin, ...aliases],
    database: prismaAdapter(db(), { provider: "postgresql" }),
    emailAndPassword: { enabled: true, disableSignUp: true, minPasswordLength: 10 },
    user: {
      additionalFields: { role: { type: "string", required: false, defaultValue: "viewer", input: false } },
    },
    session: { expiresIn: 60 * 60 * 12, updateAge: 60 * 60 },
    advanced: { database: { generateId: () => crypto.randomUUID() } },
    // Throttle password guessing per client address: 10 sign-in attempts a minute.
    rateLimit: {
      enabled: true,
      window: 60,
      max: 300,
      customRules: { "/sign-in/email": { window: 60, max: 10 } },
    },
    telemetry: { enabled: false },
    plugins: [nextCookies()],
  });
}

type Auth = ReturnType<typeof buildAuth>;
let instance: Auth | undefined;

export function auth(): Auth {
  instance ??= buildAuth();
  return instance;
}

export interface SessionUser {
  id: string;
  email: string;
  name: string;
  role: "viewer" | "operator" | "admin";
}

export async function sessionUser(headers: Headers): Promise<SessionUser | null> {
  const session = await auth().api.getSession({ headers });
  if (!session) return null;
  const role = (session.user as { role?: string }).role;
  return {
    id: session.user.id,
    email: session.user.email,
    name: session.user.name,
    role: role === "admin" || role === "operator" ? role : "viewer",
  };
}
