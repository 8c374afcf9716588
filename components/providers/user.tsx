"use client";

import { createContext, type ReactNode, useContext } from "react";
import { ROLE_INFO, roleAtLeast, type TRole } from "@/server/schemas/user";

export interface CurrentUser {
  id: string;
  email: string;
  name: string;
  role: TRole;
}

const UserContext = createContext<CurrentUser | null>(null);

export function UserProvider({ user, children }: { user: CurrentUser; children: ReactNode }) {
  return <UserContext.Provider value={user}>{children}</UserContext.Provider>;
}

export function useUser(): CurrentUser {
  const user = useContext(UserContext);
  if (!user) throw new Error("useUser() outside the signed-in console");
  return user;
}

/** null when the signed-in user may act; otherwise the reason shown beside the disabled control. */
export function useRoleBlock(needed: TRole): string | null {
  const user = useUser();
  return roleAtLeast(user.role, needed)
    ? null
    : `Needs the ${ROLE_INFO[needed].title} role; you are signed in as ${ROLE_INFO[user.role].title}.`;
}
