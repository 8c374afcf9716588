// Sign-in through better-auth (email + password, sessions in the control-plane database via the
// Prisma adapter). Public sign-up is off: admins add people (server/services/users), so nobody
// grants themselves a role. Created lazily so `next build` needs no environment.
//
// Session policy: a session lives SHARDSHIFT_SESSION_HOURS (12) from sign-in and is never extended
// by use; with SHARDSHIFT_SESSION_IDLE_MINUTES set it also ends after that long unused. Admins can
// disable an account (its sessions are deleted at once and sign-in is refused) or reset its
// password (sessions deleted); anyone can sign out everywhere; a password change ends every other
// session. The cookie cache stays off, so every request reads the session row: a deleted session
// stops working on the next request.
import { betterAuth } from "better-auth";
import { prismaAdapter } from "better-auth/adapters/prisma";
import { APIError, createAuthMiddleware } from "better-auth/api";
import { nextCookies } from "better-auth/next-js";
import { db } from "../db";
import { serverEnv } from "../env";
import { CLIENT_ADDRESS_HEADER } from "./client-address";
import { dashboardOrigins } from "./origins";
import { countInWindow } from "./throttle";

/** Per client address (better-auth's limiter, keyed on the address our server stamped). */
export const SIGN_IN_PER_ADDRESS = { window: 60, max: 10 };
/** Per account, whatever address the attempts come from (our before-hook). */
export const SIGN_IN_PER_ACCOUNT = { window: 15 * 60, max: 20 };

export const DISABLED_ACCOUNT_MESSAGE =
  "This account is disabled. Ask an admin to enable it; nothing else can be done from here.";

function buildAuth() {
  const env = serverEnv();
  return betterAuth({
    secret: env.BETTER_AUTH_SECRET,
    baseURL: env.BETTER_AUTH_URL,
    trustedOrigins: dashboardOrigins(),
    database: prismaAdapter(db(), { provider: "postgresql" }),
    emailAndPassword: { enabled: true, disableSignUp: true, minPasswordLength: 10 },
    // Password changes go through users.changeOwnPassword (audited, ends the other sessions);
    // better-auth's own route would do neither unless the client asked.
    // Profile changes go through users.renameSelf (bounded, audited); /update-user took any length
    // of name or image and recorded nothing.
    // /verify-password answers over HTTP despite its "server" scope: a password oracle for anyone
    // holding a session, outside the sign-in limits. /revoke-sessions and /revoke-other-sessions
    // end sessions unaudited; users.signOutEverywhere and changeOwnPassword do it audited.
    disabledPaths: [
      "/change-password",
      "/set-password",
      "/update-user",
      "/verify-password",
      "/revoke-sessions",
      "/revoke-other-sessions",
    ],
    user: {
      additionalFields: {
        role: { type: "string", required: false, defaultValue: "viewer", input: false },
        disabledAt: { type: "date", required: false, input: false },
      },
    },
    session: { expiresIn: Math.round(env.SHARDSHIFT_SESSION_HOURS * 3600), disableSessionRefresh: true },
    advanced: {
      database: { generateId: () => crypto.randomUUID() },
      // Only the address our HTTP server resolved from the socket (see client-address.ts).
      ipAddress: { ipAddressHeaders: [CLIENT_ADDRESS_HEADER] },
    },
    rateLimit: {
      enabled: true,
      // In the database: shared by every dashboard process and kept across restarts.
      storage: "database",
      window: 60,
      max: 300,
      customRules: {
        // Without a known address there is no per-address bucket: one shared bucket would let
        // one stranger lock everyone out. The per-account limit below still applies.
        "/sign-in/email": async (request) =>
          request.headers.get(CLIENT_ADDRESS_HEADER) ? SIGN_IN_PER_ADDRESS : false,
      },
    },
    hooks: {
      before: createAuthMiddleware(async (ctx) => {
        if (ctx.path !== "/sign-in/email") return;
        const email = typeof ctx.body?.email === "string" ? ctx.body.email.trim().toLowerCase() : "";
        if (!email) return;
        const attempts = await countInWindow(db(), `sign-in:account:${email}`, SIGN_IN_PER_ACCOUNT.window);
        if (attempts.count > SIGN_IN_PER_ACCOUNT.max) {
          throw new APIError("TOO_MANY_REQUESTS", {
            message: `Too many sign-in attempts for this account. Wait ${Math.round(SIGN_IN_PER_ACCOUNT.window / 60)} minutes, or ask an admin to reset the password.`,
            code: "ACCOUNT_THROTTLED",
          });
        }
      }),
    },
    databaseHooks: {
      session: {
        create: {
          // Runs after the password was checked, so a guesser learns nothing about the account.
          async before(session) {
            const user = await db().user.findUnique({
              where: { id: session.userId },
              select: { disabledAt: true },
            });
            if (user?.disabledAt) {
              throw new APIError("FORBIDDEN", {
                message: DISABLED_ACCOUNT_MESSAGE,
                code: "ACCOUNT_DISABLED",
              });
            }
          },
        },
      },
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
  /** The session this request came with (kept when its owner ends all the others). */
  sessionId?: string;
}

/** How often an idle-limited session's last use is written: at most once a minute per session. */
const TOUCH_EVERY_MS = 60_000;

export async function sessionUser(headers: Headers): Promise<SessionUser | null> {
  const session = await auth().api.getSession({ headers });
  if (!session) return null;
  const user = session.user as typeof session.user & { role?: string; disabledAt?: Date | null };
  // Sessions are deleted when an account is disabled; this also covers one created in the same
  // instant as the disable.
  if (user.disabledAt) return null;
  const idleMinutes = serverEnv().SHARDSHIFT_SESSION_IDLE_MINUTES;
  if (idleMinutes) {
    const lastUsed = new Date(session.session.updatedAt).getTime();
    if (Date.now() - lastUsed > idleMinutes * 60_000) {
      await db().session.deleteMany({ where: { id: session.session.id } });
      return null;
    }
    if (Date.now() - lastUsed > TOUCH_EVERY_MS) {
      await db().session.updateMany({ where: { id: session.session.id }, data: { updatedAt: new Date() } });
    }
  }
  return {
    id: user.id,
    email: user.email,
    name: user.name,
    role: user.role === "admin" || user.role === "operator" ? user.role : "viewer",
    sessionId: session.session.id,
  };
}
