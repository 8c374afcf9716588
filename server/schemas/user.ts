import { z } from "zod";

export const ROLES = ["viewer", "operator", "admin"] as const;
export const ZRole = z.enum(ROLES);
export type TRole = z.infer<typeof ZRole>;

export const ROLE_INFO: Record<TRole, { title: string; may: string }> = {
  viewer: { title: "Viewer", may: "read every plan, chart and audit event" },
  operator: { title: "Operator", may: "create and run plans, promote cohorts, pull the breaker" },
  admin: { title: "Admin", may: "everything an operator may, plus topology and users" },
};

const rank: Record<TRole, number> = { viewer: 0, operator: 1, admin: 2 };
export function roleAtLeast(role: TRole, needed: TRole): boolean {
  return rank[role] >= rank[needed];
}

/** Every text input is bounded: an email by RFC 5321's 254 characters. */
export const ZEmail = z
  .email("Enter an email address")
  .max(254, "An email address has at most 254 characters");
export const ZPersonName = z
  .string()
  .trim()
  .min(2, "Enter a name (at least 2 characters)")
  .max(100, "Keep the name under 100 characters");

export const ZSignInInput = z.object({
  email: ZEmail,
  password: z.string().min(1, "Enter your password").max(128, "Passwords have at most 128 characters"),
});

export const ZSetRoleInput = z.object({
  userId: z.string().min(1).max(64),
  role: ZRole,
  reason: z.string().trim().min(3, "Say why (at least 3 characters)").max(500),
});

export const ZCreateUserInput = z.object({
  name: ZPersonName,
  email: ZEmail,
  role: ZRole,
  password: z.string().min(10, "At least 10 characters").max(128),
});

// ---- Locking people out (server/services/users/account-access.ts) ----

const ZReason = z.string().trim().min(3, "Say why (at least 3 characters)").max(500);
const ZNewPassword = z.string().min(10, "At least 10 characters").max(128, "At most 128 characters");

export const ZUserAccessInput = z.object({ userId: z.string().min(1).max(64), reason: ZReason });

export const ZResetPasswordInput = z.object({
  userId: z.string().min(1).max(64),
  newPassword: ZNewPassword,
  reason: ZReason,
});

export const ZChangeOwnPasswordInput = z
  .object({
    currentPassword: z.string().min(1, "Enter your current password").max(128),
    newPassword: ZNewPassword,
  })
  .refine((v) => v.currentPassword !== v.newPassword, {
    path: ["newPassword"],
    message: "Choose a password different from the current one",
  });

/** A signed-in person renames themself (audited); the only profile field anyone may change. */
export const ZRenameSelfInput = z.object({ name: ZPersonName });
export type TRenameSelfInput = z.infer<typeof ZRenameSelfInput>;
