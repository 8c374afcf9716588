import type { Role } from "../generated/prisma/enums";

/** Who is doing something, and under which request: every audited change names both. */
export interface Actor {
  id: string | null;
  email: string;
  role: Role | "system";
  requestId: string;
}

export function systemActor(requestId: string, email = "system"): Actor {
  return { id: null, email, role: "system", requestId };
}
