"use client";

import Link from "next/link";
import { usePathname, useRouter } from "next/navigation";
import { authClient } from "@/components/auth-client";
import { useUser } from "@/components/providers/user";
import { Badge } from "@/components/ui/badge";
import { ROLE_INFO } from "@/server/schemas/user";

const links = [
  { href: "/", label: "Plans", match: (p: string) => p === "/" || p.startsWith("/plans") },
  { href: "/databases", label: "Databases", match: (p: string) => p.startsWith("/databases") },
  { href: "/audit", label: "Audit log", match: (p: string) => p.startsWith("/audit") },
  { href: "/users", label: "Users", match: (p: string) => p.startsWith("/users") },
];

export function TopNav() {
  const pathname = usePathname();
  const router = useRouter();
  const user = useUser();
  return (
    <header className="border-b border-slate-200 bg-white">
      <div className="mx-auto flex max-w-7xl items-center gap-6 px-6 py-2.5">
        <Link href="/" className="flex items-center gap-2 font-semibold text-slate-900">
          <span aria-hidden className="grid size-6 place-items-center rounded bg-sky-700 text-xs text-white">
            S
          </span>
          Shardshift
        </Link>
        <nav aria-label="Main" className="flex gap-1">
          {links.map((link) => {
            const active = link.match(pathname);
            return (
              <Link
                key={link.href}
                href={link.href}
                aria-current={active ? "page" : undefined}
                className={`rounded-md px-2.5 py-1.5 text-sm ${active ? "bg-slate-100 font-medium text-slate-900" : "text-slate-600 hover:text-slate-900"}`}
              >
                {link.label}
              </Link>
            );
          })}
        </nav>
        <div className="ml-auto flex items-center gap-3 text-sm">
          <span className="text-slate-700" data-testid="signed-in-as">
            {user.name} <span className="text-slate-500">({user.email})</span>
          </span>
          <Badge tone={user.role === "viewer" ? "neutral" : user.role === "operator" ? "info" : "warn"}>
            {ROLE_INFO[user.role].title}
          </Badge>
          <button
            type="button"
            className="rounded-md px-2 py-1 text-slate-600 hover:bg-slate-100 hover:text-slate-900"
            onClick={async () => {
              await authClient.signOut();
              router.push("/sign-in");
              router.refresh();
            }}
          >
            Sign out
          </button>
        </div>
      </div>
    </header>
  );
}
