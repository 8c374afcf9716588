import { headers } from "next/headers";
import { redirect } from "next/navigation";
import type { ReactNode } from "react";
import { TopNav } from "@/components/layout/top-nav";
import { UserProvider } from "@/components/providers/user";
import { sessionUser } from "@/server/auth/auth";

export const dynamic = "force-dynamic";

export default async function ConsoleLayout({ children }: { children: ReactNode }) {
  const user = await sessionUser(await headers());
  if (!user) redirect("/sign-in");
  return (
    <UserProvider user={user}>
      <TopNav />
      <main className="mx-auto max-w-7xl px-6 py-6">{children}</main>
    </UserProvider>
  );
}
