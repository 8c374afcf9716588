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

export const ZSignInInput = z.object({
  email: z.email("Enter an email address"),
  password: z.string().min(1, "Enter your password"),
});

export const ZSetRoleInput = z.object({
  userId: z.string().min(1),
  role: ZRole,
  reason: z.string().trim().min(3, "Say why (at least 3 characters)").max(500),
});

export const ZCreateUserInput = z.object({
  name: z.string().trim().min(2, "Enter a name").max(80),
  email: z.email("Enter an email address"),
  role: ZRole,
  password: z.string().min(10, "At least 10 characters").max(128),
});
